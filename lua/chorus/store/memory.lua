-- chorus.store.memory: the embedded default store. Everything lives in
-- this process; finished executions are kept up to a bound (oldest dropped
-- first) so a long-running process does not grow without limit, most of
-- them serialized outside the Lua heap (see RECENT below).
--
-- The store interface (chorus.store.pg implements the same; the contract
-- spec spec/shared/store_contract.lua runs against both). Writes return
-- once the change is durable (here: at once); reads return plain tables.
--
-- Executions (called by chorus.engine.execution):
--   insert_execution(exec)          -> true | nil, err
--   update_execution(exec)          -> true | nil, err   status, totals, output
--   save_step(exec, step_run, wait) -> true | nil, err   wait=false: no need
--                                       to wait for durability ("running")
--   get_record(id_or_trace, scope)  -> execution record | nil
--   list_executions(filter)         -> records (no step outputs), total, totals
--      filter: config (name or id), config_id (id only), session_id,
--      status, user_id, tenant_id, since, before (created_at in [since,
--      before), epoch seconds), limit, offset; totals = {tokens, cost} of
--      every execution that matches, not just the page
-- Records and summaries have the same fields in both stores (times as
-- epoch seconds; chorus.api.present gives them their API form):
--   summary: id, trace_id, config, config_id, config_version, strategy,
--     status, error, user_id, tenant_id, session_id, metadata, created_at,
--     started_at, paused_at, finished_at, metrics {latency_ms, tokens, cost}
--   record: the summary + strategy_version, input, output, answered_by,
--     consensus, node_id, claims, steps (each as Execution:record gives it)
--   execution_config(id_or_trace, scope) -> the normalized config it ran | nil
--      (nil too when the store no longer has it: here, archived executions)
--   stats(filter)                   -> the overview numbers (chorus.store.stats)
--      filter: window_s, tenant_id, user_id
-- Configs (called by the API and the CLI):
--   create_config(cfg, owner)       -> config | nil, err, code
--      owner: {tenant_id, user_id, global = bool}; code "conflict" when the
--      name is taken in that tenant (or globally)
--   get_config(id_or_name, scope, shared) -> config | nil
--      scope: {tenant_id}; a tenant sees its own configs and global ones;
--      a name is looked up in the tenant first, then globally. shared =
--      true: the caller only reads the config, so the store may hand out
--      its own record instead of a copy (every execute reads one)
--   list_configs(filter)            -> configs, total
--      filter: tenant_id, owner_id, strategy, active, search (a piece of
--      the name or description, any case), limit, offset
--   update_config(id, cfg, by)      -> config | nil, err, code ("not_found")
--      bumps version; the previous version stays readable; cfg.is_active,
--      when set, is applied in the same write
--   set_config_active(id, active, by) -> config | nil, err, code ("not_found")
--      activation is not a new version of the content: no bump
--   config_version(id, version)     -> {id, version, name, description,
--      strategy, steps, metadata, created_at, created_by} | nil
--   delete_config(id)               -> true | nil, err, code (soft delete)
-- A config is {id, name, description, strategy, steps = {steps, settings},
-- metadata, tenant_id, owner_id, is_global, is_active, version,
-- created_at, updated_at} (the seed's form, as the API returns it).
local native = require "chorus.native"
local validate = require "chorus.engine.validate"
local schema = require "chorus.schema"
local json = require "chorus.json"
local buffer = require "string.buffer"
local log = require "chorus.log"
local sched = require "chorus.sched"
local memory_stats = require "chorus.store.memory_stats"
local Execution = require("chorus.engine.execution").Execution

local Store = {}
Store.__index = Store

local M = {}

-- Why ended executions leave the Lua heap: the collector's cycles walk
-- the whole heap, and a heap several times larger than the working set
-- costs every request (cache misses, longer sweeps). With 10,000 ended
-- execution objects kept (~1.8 KB each), an API server on one process did
-- 14.9k POST execute/s at p99 11 ms, against 20.2k at p99 5 ms keeping
-- 100; the same 10,000 as JSON strings in the Lua heap were no better. So
-- the last RECENT ended executions stay objects (the hooks that run as
-- one ends, metrics and waiters, still find it), and older ones go to a
-- native archive (rt_archive.c): their record serialized and the fields
-- lists filter on, in malloc'd memory the collector never sees.
local RECENT = 32

-- new({max_finished = n, recent = m, node_id = s}) keeps at most n finished
-- executions (default 10000), the last m of them (default 32) as objects;
-- node_id: this process's, the node_id of its records.
function M.new(opts)
  opts = opts or {}
  local cap = opts.max_finished or 10000
  assert(type(cap) == "number" and cap >= 0 and cap % 1 == 0, "max_finished must be an integer >= 0")
  local recent = math.min(cap, opts.recent or RECENT)
  local archive
  if cap > recent then archive = assert(native.archive(cap - recent)) end
  return setmetatable({
    kind = "memory",
    node_id = opts.node_id,
    by_id = {}, by_trace = {}, -- execution objects: running, or among the recent ended
    -- The recent ended ones: a ring of `recent` slots, the n-th to end in
    -- slot (n - 1) % recent + 1; the one it replaces goes to the archive.
    ended = 0, recent_cap = recent, recent = {},
    archive = archive,
    configs = {}, config_history = {}, -- id -> config; id -> {version -> config}
    config_names = {}, -- "tenant\0name" -> live config
    stats_agg = memory_stats.new(),
  }, Store)
end

-- Executions ------------------------------------------------------------

function Store:insert_execution(exec)
  self.by_id[exec.id] = exec
  self.by_trace[exec.trace_id] = exec
  return true
end

local TERMINAL = require("chorus.engine.states").execution_terminal

-- Records are archived with LuaJIT's serializer (string.buffer): 0.3 us
-- a record against 4.3 for JSON, and they read back exactly (numbers,
-- json.null, arrays marked to stay arrays when empty).
local codec = buffer.new({ metatable = { getmetatable(json.array()) } })

-- archive(e): an ended execution object leaves the Lua heap. A record that
-- holds what cannot be serialized (a function an agent returned) is kept
-- as its summary with a note; the API could not have sent more of it.
local function archive(self, e)
  codec:reset()
  local ok, err = pcall(codec.encode, codec, e:record())
  if not ok then
    log.warn_with({ trace_id = e.trace_id, execution_id = e.id },
      "memory store: execution %s: its record cannot be kept (%s); keeping its summary", e.id, err)
    local r = e:summary()
    r.error = ("%s (record not kept: %s)"):format(tostring(r.error or "no error"), tostring(err))
    r.steps = json.array()
    codec:reset()
    codec:encode(r)
  end
  local stored, perr = self.archive:put(e.id, e.trace_id, e.status, e.config_name, e.config_id,
    e.user_id, e.tenant_id, e.created_at, codec:tostring(), e.tokens or 0, e.cost or 0, e.session_id)
  if not stored then
    log.error_with({ trace_id = e.trace_id, execution_id = e.id }, "memory store: execution %s: not archived: %s",
      e.id, perr)
  end
end

function Store:update_execution(exec)
  if TERMINAL[exec.status] and not exec._stored_final then
    exec._stored_final = true
    self.stats_agg:ended(exec)
    local rcap = self.recent_cap
    local old = exec
    if rcap > 0 then
      local n = self.ended + 1
      self.ended = n
      local slot = (n - 1) % rcap + 1
      old = self.recent[slot]
      self.recent[slot] = exec
    end
    if old then
      self.by_id[old.id] = nil
      self.by_trace[old.trace_id] = nil
      if self.archive then archive(self, old) end
    end
  end
  return true
end

function Store:save_step()
  return true
end

function Store:stats(filter)
  return self.stats_agg:query(self.by_id, filter or {})
end

local function visible(e, scope)
  if not scope or scope.admin then return true end
  if scope.tenant_id ~= nil and e.tenant_id ~= scope.tenant_id then return false end
  if scope.user_id ~= nil and e.user_id ~= scope.user_id then return false end
  return true
end

-- An archived execution as get_execution returns it: its identity and
-- status, and the controls of chorus.engine.execution, which refuse every action
-- on an ended execution with the same messages as on a live one.
local Ended = {}
Ended.__index = Ended
for _, name in ipairs({ "pause", "resume", "cancel", "approve", "reject" }) do
  Ended[name] = Execution[name]
end

-- archived(key) -> serialized record, fields as a table | nil
local function archived(self, key)
  if not self.archive or type(key) ~= "string" then return nil end
  local blob, status, id, trace, config, config_id, user, tenant, created, session = self.archive:get(key)
  if not blob then return nil end
  return blob, { id = id, trace_id = trace, status = status, config_name = config, config_id = config_id,
    user_id = user, tenant_id = tenant, created_at = created, session_id = session, finalized = true }
end

-- decode(blob) -> the archived record (a fresh table each time).
local function decode(blob)
  return codec:set(blob):decode()
end

-- The execution object, for controls (pause, cancel ...): the live one,
-- or a view of an archived one that refuses them.
function Store:get_execution(key)
  local e = self.by_id[key] or self.by_trace[key]
  if e then return e end
  local blob, view = archived(self, key)
  if blob then return setmetatable(view, Ended) end
  return nil
end

-- Executions here are never claimed through a database: claims stays 0
-- and the node is this process.
local function stamped(self, r)
  r.node_id, r.claims = self.node_id, 0
  return r
end

function Store:get_record(key, scope)
  local e = self.by_id[key] or self.by_trace[key]
  if e then
    if not visible(e, scope) then return nil end
    return stamped(self, e:record())
  end
  local blob, fields = archived(self, key)
  if not blob or not visible(fields, scope) then return nil end
  return stamped(self, decode(blob))
end

function Store:execution_config(key, scope)
  local e = self.by_id[key] or self.by_trace[key]
  if not e or not visible(e, scope) then return nil end
  return e.config
end

-- summary of an archived execution (what Execution:summary gives).
local function archived_summary(self, id)
  local blob, f = archived(self, id)
  local r = decode(blob)
  return {
    id = r.id, trace_id = r.trace_id, config = r.config, config_id = f.config_id,
    config_version = r.config_version, strategy = r.strategy, status = r.status, error = r.error,
    user_id = f.user_id, tenant_id = f.tenant_id, session_id = f.session_id, metadata = r.metadata,
    created_at = r.created_at, started_at = r.started_at, paused_at = r.paused_at,
    finished_at = r.finished_at, metrics = r.metrics,
  }
end

local function newer(a_created, a_id, b_created, b_id)
  if a_created ~= b_created then return a_created > b_created end
  return a_id > b_id
end

-- list_executions(filter) -> summaries newest first, total. The objects
-- (running and recent) are sorted here, the archive sorts its own; the
-- page is taken from the two merged.
function Store:list_executions(filter)
  filter = filter or {}
  local fs, fc, fu, ft = filter.status, filter.config, filter.user_id, filter.tenant_id
  local fci, fss = filter.config_id, filter.session_id
  local since, before = filter.since or -math.huge, filter.before or math.huge
  local offset, limit = filter.offset or 0, filter.limit or 50
  local live, tokens, cost = {}, 0, 0
  for _, e in pairs(self.by_id) do
    if (not fs or e.status == fs) and (not fc or e.config_name == fc or e.config_id == fc)
      and (not fci or e.config_id == fci) and (not fss or e.session_id == fss)
      and (not fu or e.user_id == fu) and (not ft or e.tenant_id == ft)
      and e.created_at >= since and e.created_at < before then
      live[#live + 1] = e
      tokens, cost = tokens + (e.tokens or 0), cost + (e.cost or 0)
    end
  end
  table.sort(live, function(a, b) return newer(a.created_at, a.id, b.created_at, b.id) end)
  local total, ids, created = 0, {}, {}
  if self.archive then
    local t, c
    total, ids, created, t, c = self.archive:select(fs, fc, fu, ft, offset + limit, since, before, fci, fss)
    if not total then return nil, ids end
    tokens, cost = tokens + t, cost + c
  end
  total = total + #live
  local items = {}
  local i, j = 1, 1 -- next in live, next in the archive's list
  for pos = 1, math.min(total, offset + limit) do
    -- A long answer is built in slices: other requests run between them.
    if pos % 200 == 0 and native.current() then sched.sleep(0) end
    local e, take_live = live[i]
    if e and ids[j] then take_live = newer(e.created_at, e.id, created[j], ids[j])
    else take_live = e ~= nil end
    if pos > offset then
      items[#items + 1] = take_live and e:summary() or archived_summary(self, ids[j])
    end
    if take_live then i = i + 1 else j = j + 1 end
  end
  return items, total, { tokens = tokens, cost = cost }
end

local function page(list, limit, offset)
  local total = #list
  offset = offset or 0
  limit = limit or 50
  local out = {}
  for i = offset + 1, math.min(total, offset + limit) do out[#out + 1] = list[i] end
  return out, total
end

-- Configs ---------------------------------------------------------------

local function tenant_key(t) return t == nil and "" or t end

-- Live configs by tenant and name (every execute looks one up).
local function name_key(name, tenant_id) return tenant_key(tenant_id) .. "\0" .. tostring(name) end

local function find_by_name(self, name, tenant_id)
  return self.config_names[name_key(name, tenant_id)]
end

-- What callers get: a copy of the record's fields (not of the nested
-- steps document, which is replaced, never changed in place, on update).
local function public(c)
  if not c then return nil end
  local out = {}
  for k, v in pairs(c) do out[k] = v end
  out.deleted = nil
  return out
end

function Store:create_config(cfg, owner)
  owner = owner or {}
  local tenant_id = not owner.global and owner.tenant_id or nil
  if find_by_name(self, cfg.name, tenant_id) then
    return nil, ("a config named '%s' already exists"):format(cfg.name), "conflict"
  end
  local now = native.time()
  local doc = validate.document(cfg)
  local c = {
    id = native.uuid(), name = cfg.name, description = cfg.description, strategy = cfg.strategy,
    steps = doc.steps, metadata = cfg.metadata or {}, tenant_id = tenant_id,
    owner_id = owner.user_id, is_global = tenant_id == nil, is_active = true, version = 1,
    created_at = now, updated_at = now,
  }
  self.configs[c.id] = c
  self.config_names[name_key(c.name, c.tenant_id)] = c
  self.config_history[c.id] = { [1] = schema.copy(c) }
  return public(c)
end

local function scoped(c, scope)
  if not c or c.deleted then return nil end
  if scope and not scope.admin and c.tenant_id ~= nil and c.tenant_id ~= scope.tenant_id then return nil end
  return c
end

local function shared_record(c) return c end

function Store:get_config(key, scope, shared)
  local out = shared and shared_record or public
  local c = scoped(self.configs[key], scope)
  if c then return out(c) end
  local tenant = scope and scope.tenant_id
  if tenant ~= nil then
    c = find_by_name(self, key, tenant)
    if c then return out(c) end
  end
  return out(scoped(find_by_name(self, key, nil), scope))
end

function Store:list_configs(filter)
  filter = filter or {}
  local q = filter.search and filter.search ~= "" and filter.search:lower() or nil
  local matched = {}
  for _, c in pairs(self.configs) do
    if not c.deleted
      and (filter.tenant_id == nil or c.tenant_id == nil or c.tenant_id == filter.tenant_id)
      and (filter.owner_id == nil or c.owner_id == filter.owner_id)
      and (filter.strategy == nil or c.strategy == filter.strategy)
      and (filter.active == nil or c.is_active == filter.active)
      and (q == nil or c.name:lower():find(q, 1, true)
        or (type(c.description) == "string" and c.description:lower():find(q, 1, true))) then
      matched[#matched + 1] = c
    end
  end
  table.sort(matched, function(a, b)
    if a.name ~= b.name then return a.name < b.name end
    return tenant_key(a.tenant_id) < tenant_key(b.tenant_id)
  end)
  local items, total = page(matched, filter.limit, filter.offset)
  for i, c in ipairs(items) do items[i] = public(c) end
  return items, total
end

function Store:update_config(id, cfg, by)
  local c = self.configs[id]
  if not c or c.deleted then return nil, "config not found", "not_found" end
  if cfg.name ~= c.name then
    local other = find_by_name(self, cfg.name, c.tenant_id)
    if other then return nil, ("a config named '%s' already exists"):format(cfg.name), "conflict" end
  end
  local doc = validate.document(cfg)
  self.config_names[name_key(c.name, c.tenant_id)] = nil
  self.config_names[name_key(cfg.name, c.tenant_id)] = c
  c.name, c.description, c.strategy, c.steps = cfg.name, cfg.description, cfg.strategy, doc.steps
  c.metadata = cfg.metadata or c.metadata
  if cfg.is_active ~= nil then c.is_active = cfg.is_active end
  c.version = c.version + 1
  c.updated_at = native.time()
  c.updated_by = by
  self.config_history[id][c.version] = schema.copy(c)
  return public(c)
end

function Store:set_config_active(id, active, by)
  local c = self.configs[id]
  if not c or c.deleted then return nil, "config not found", "not_found" end
  c.is_active = active
  c.updated_at = native.time()
  c.updated_by = by
  return public(c)
end

-- A version as the PostgreSQL store keeps it: created when it was written
-- (the config's updated_at then), by whoever wrote it.
function Store:config_version(id, version)
  local h = self.config_history[id]
  local c = h and h[version]
  if not c then return nil end
  return { id = c.id, version = c.version, name = c.name, description = c.description, strategy = c.strategy,
    steps = c.steps, metadata = c.metadata, created_at = c.updated_at, created_by = c.updated_by or c.owner_id }
end

function Store:delete_config(id)
  local c = self.configs[id]
  if not c or c.deleted then return nil, "config not found", "not_found" end
  c.deleted = true
  c.is_active = false
  c.deleted_at = native.time()
  self.config_names[name_key(c.name, c.tenant_id)] = nil
  return true
end

-- API keys -----------------------------------------------------------------
--   create_key({prefix, hash, tenant_id, user_id, role}) -> key record
--   find_key(hash) -> record | nil      (revoked ones too: revoked_at set)
--   list_keys({tenant_id}) -> records   (never the hash)
--   revoke_key(id_or_prefix) -> true | nil, err, "not_found"

function Store:create_key(k)
  self.keys, self.keys_by_hash = self.keys or {}, self.keys_by_hash or {}
  local rec = { id = native.uuid(), prefix = k.prefix, hash = k.hash, tenant_id = k.tenant_id,
    user_id = k.user_id, role = k.role, created_at = native.time() }
  self.keys[rec.id] = rec
  self.keys_by_hash[rec.hash] = rec
  return { id = rec.id, prefix = rec.prefix, tenant_id = rec.tenant_id, user_id = rec.user_id,
    role = rec.role, created_at = rec.created_at }
end

function Store:find_key(hash)
  return self.keys_by_hash and self.keys_by_hash[hash]
end

function Store:list_keys(filter)
  local out = {}
  for _, k in pairs(self.keys or {}) do
    if not (filter and filter.tenant_id) or k.tenant_id == filter.tenant_id then
      out[#out + 1] = { id = k.id, prefix = k.prefix, tenant_id = k.tenant_id, user_id = k.user_id,
        role = k.role, created_at = k.created_at, revoked_at = k.revoked_at }
    end
  end
  table.sort(out, function(a, b) return a.created_at < b.created_at end)
  return out
end

function Store:revoke_key(key)
  for _, k in pairs(self.keys or {}) do
    if (k.id == key or k.prefix == key) and not k.revoked_at then
      k.revoked_at = native.time()
      return true
    end
  end
  return nil, "no such key", "not_found"
end

return M
