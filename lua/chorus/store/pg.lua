-- chorus.store.pg: the PostgreSQL store (same interface as
-- chorus.store.memory; see its header). Execution and step writes go
-- through the group committer (chorus.store.committer); reads are plain
-- parameterized queries.
--
-- Durability: insert_execution returns once committed, and so do an
-- execution's terminal status (with its webhook outbox row), compensation,
-- and every terminal transition of a step (so a dependent step never
-- starts before its dependency's completion is durable). "running" and
-- "paused" are queued without waiting: nothing depends on them, and the
-- execution's lane keeps them ahead of its next write.
--
-- Ordering and fencing: each write carries a sequence number; the row
-- only takes a write whose number is >= its own. Numbers are
-- claims * 1e9 + a counter, so a node that lost its claim on an execution
-- (its lease expired and another node took it) can never overwrite the
-- new owner's rows; step writes also require the execution's current
-- claim to be the writer's. Such a write affects nothing and comes back
-- "fenced".
--
-- Outputs are bounded by the execution's limits (chorus.engine.limits) before
-- they get here; as a safety net, one larger than max_output_bytes
-- (default 128 MiB) is stored truncated (output_truncated = true), and a
-- truncated step is run again on recovery rather than replayed.
local json = require "chorus.json"
local committer_mod = require "chorus.store.committer"
local callbacks = require "chorus.run.callbacks"
local validate = require "chorus.engine.validate"
local native = require "chorus.native"
local stats_mod = require "chorus.store.stats"

local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs
local encode, null = json.encode, json.null

local M = {}

local Store = {}
Store.__index = Store

M.SEQ_PER_CLAIM = 1e9

-- new({pool = pool, max_output_bytes = n, committer = {...}}) -> store
function M.new(opts)
  return setmetatable({
    kind = "pg",
    pool = opts.pool,
    committer = committer_mod.new(opts.pool, opts.committer),
    max_output = opts.max_output_bytes or 128 * 1048576,
    live = {}, -- executions running in this process, by id and trace id
    known_snapshots = {}, -- config snapshot hashes known to be stored
  }, Store)
end

-- Outputs, inputs and results are not changed once stored, and the same
-- table is often written more than once (a step's output is also the
-- execution's): each table is encoded once (weak: it goes with the table).
local encoded = setmetatable({}, { __mode = "k" })

local function jsonb(v)
  if v == nil then return nil end
  local tv = type(v) == "table"
  if tv then
    local s = encoded[v]
    if s then return s end
  end
  local s, err = encode(v)
  if not s then s = encode({ _unencodable = tostring(err) }) end
  if tv then encoded[v] = s end
  return s
end

-- Executions ------------------------------------------------------------

local function next_seq(exec)
  local n = (exec.wseq or 0) + 1
  exec.wseq = n
  return (exec.claims or 0) * M.SEQ_PER_CLAIM + n
end

local TERMINAL = require("chorus.engine.states").execution_terminal

-- Snapshots are stored once per distinct normalized config; the hash of
-- each config table is computed once (weak: it goes with the config).
local hashes = setmetatable({}, { __mode = "k" })

local function snapshot_of(cfg)
  local h = hashes[cfg]
  if h then return h[1], h[2] end
  local text = jsonb(cfg)
  local hash = native.sha256(json.canonical(cfg) or text)
  hashes[cfg] = { hash, text }
  return hash, text
end

-- insert_records(store, exec, opts) -> the records inserting exec (pending).
-- opts.node_id/claim_token/lease_ms: inserted already claimed by a node;
-- idempotency_key, priority.
function M.insert_records(store, exec, opts)
  opts = opts or {}
  local hash, text = snapshot_of(exec.config)
  local recs = {}
  if not (store and store.known_snapshots[hash]) then
    recs[1] = { kind = "snapshot", hash = hash, json = text }
  end
  recs[#recs + 1] = { kind = "insert", id = exec.id, trace_id = exec.trace_id, config_id = exec.config_id,
    config_version = exec.config_version, config_name = exec.config.name, config_hash = hash,
    status = exec.status, input = jsonb(exec.input), user_id = exec.user_id, tenant_id = exec.tenant_id,
    idempotency_key = opts.idempotency_key, priority = opts.priority or 0, node_id = opts.node_id,
    claim_token = opts.claim_token, lease_ms = opts.lease_ms or 0, claims = opts.node_id and 1 or 0,
    created_at = exec.created_at, callback_url = exec.callback_url, session_id = exec.session_id,
    metadata = exec.metadata and jsonb(exec.metadata) or nil }
  return recs, hash
end

-- write(records, wait): through the group committer; remembers snapshots
-- that are known to be stored.
-- key: the execution whose writes these are (kept in order on one lane).
local lane_key = committer_mod.lane_key
local function lane(exec)
  local k = exec.lane
  if not k then
    k = lane_key(exec.id)
    exec.lane = k
  end
  return k
end
M.lane = lane

function Store:write(records, wait, exec)
  local ok, err, info = self.committer:write(records, wait, exec and lane(exec))
  if ok and wait then
    for _, r in ipairs(records) do
      if r.kind == "snapshot" then self.known_snapshots[r.hash] = true end
    end
  end
  return ok, err, info
end

function Store:insert_execution(exec)
  self.live[exec.id], self.live[exec.trace_id] = exec, exec
  if exec.persisted then return true end -- claimed from the database
  exec.persisted = true
  return self:write((M.insert_records(self, exec)), true, exec)
end

function Store:update_execution(exec)
  local seq = next_seq(exec)
  local recs = { {
    kind = "update", id = exec.id, status = exec.status, output = jsonb(exec.output), error = exec.error,
    answered_by = exec.answered_by, consensus = jsonb(exec.consensus), tokens = exec.tokens or 0,
    cost = exec.cost or 0, latency_ms = exec.latency_ms, started_at = exec.started_at,
    finished_at = exec.finished_at, paused_at = exec.paused_at, script_versions = exec.started_at
      and ('{"strategy":' .. encode(exec:strategy_version()) .. "}") or "{}",
    paused = exec.paused_by_user == true, seq = seq,
  } }
  local terminal = TERMINAL[exec.status]
  local urls = terminal and callbacks.urls(exec)
  if urls then
    -- The outbox rows commit with the terminal status, or not at all.
    local payload = jsonb(callbacks.payload(exec))
    for _, url in ipairs(urls) do
      recs[#recs + 1] = { kind = "callback", execution_id = exec.id, url = url, payload = payload, seq = seq }
    end
  end
  -- Nothing waits on "running" or "paused": only an end (and the
  -- compensation that precedes it) must be durable before we go on.
  local ok, err, info = self:write(recs, terminal or exec.status == "compensation", exec)
  if terminal then self.live[exec.id], self.live[exec.trace_id] = nil, nil end
  return ok, err, info
end

-- save_step(exec, sr, wait): wait defaults to true except for "running".
function Store:save_step(exec, sr, wait)
  if wait == nil then wait = sr.status ~= "running" end
  local step = exec:step_of(sr.id)
  local out, truncated = nil, false
  if sr.output ~= nil then
    out = jsonb(sr.output)
    if #out > self.max_output then
      truncated = true
      out = encode({ _truncated = true, bytes = #out, preview = out:sub(1, 1024) })
    end
  end
  return self:write({ {
    kind = "step", execution_id = exec.id, step_id = sr.id,
    step_index = exec:position_of(sr.id) - 1, name = step.name,
    definition = exec:is_dynamic(sr.id) and jsonb(step) or nil, reason = sr.reason,
    agent = step.agent, agent_version = sr.agent_version, status = sr.status, attempts = sr.attempts,
    input = jsonb(sr.input), output = out, output_truncated = truncated, error = sr.error,
    latency_ms = sr.latency_ms, tokens = sr.tokens or 0, cost = sr.cost or 0, answered_by = sr.answered_by,
    approval = jsonb(sr.approval), compensation = jsonb(sr.compensation), started_at = sr.started_at,
    finished_at = sr.finished_at, seq = next_seq(exec), claims = exec.claims or 0,
    cached = sr.cached, cached_from = sr.cached_from, rate_wait_ms = sr.rate_wait_ms,
  } }, wait, exec)
end

-- release(exec): this node lets go of exec at once (its lease lapses);
-- a node that claims it later resumes it from its rows.
function Store:release(exec)
  self.live[exec.id], self.live[exec.trace_id] = nil, nil
  return self.pool:query([[UPDATE orchestration_executions SET lease_expires_at = now() - interval '1 second'
    WHERE id = $1::uuid AND claims = $2]], exec.id, exec.claims or 0)
end

-- The live execution object when it runs in this process.
function Store:get_execution(key)
  return self.live[key]
end

-- exec_cols(alias) -> the select list of an execution row (the config
-- snapshot joined in).
local function exec_cols(a)
  return (([[
A.id::text AS id, A.trace_id::text AS trace_id, A.config_id::text AS config_id, A.config_version,
A.config_name, (SELECT snapshot FROM orchestration_config_snapshots s WHERE s.hash = A.config_hash)
AS config_snapshot, A.script_versions, A.status, A.input, A.output, A.error, A.answered_by,
A.consensus, A.user_id, A.tenant_id, A.node_id, A.claims, A.tokens, A.cost, A.latency_ms,
A.paused_by_user, A.cancel_requested, A.callback_url, A.session_id, A.metadata,
extract(epoch FROM A.created_at) AS created_at, extract(epoch FROM A.started_at) AS started_at,
extract(epoch FROM A.paused_at) AS paused_at, extract(epoch FROM A.finished_at) AS finished_at]])
    :gsub("A%.", a .. "."))
end
M.exec_cols = exec_cols
local EXEC_COLS = exec_cols("orchestration_executions")

local STEP_COLS = [[
execution_id::text, step_id, step_index, name, agent, agent_version, status, attempts, input,
output, output_truncated, error, latency_ms, tokens, cost, answered_by, approval, compensation,
seq, definition, reason, cached, cached_from, rate_wait_ms,
extract(epoch FROM started_at) AS started_at, extract(epoch FROM finished_at) AS finished_at]]
M.STEP_COLS = STEP_COLS

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- metadata: NULL and {} read as none (the memory store keeps none).
local function metadata_of(m)
  if m == nil or m == null or next(m) == nil then return nil end
  return m
end

local function summary_of(r)
  return {
    id = r.id, trace_id = r.trace_id, config = r.config_name, config_id = r.config_id,
    config_version = r.config_version, strategy = r.config_snapshot and r.config_snapshot.strategy,
    status = r.status, error = r.error, user_id = r.user_id, tenant_id = r.tenant_id,
    session_id = r.session_id, metadata = metadata_of(r.metadata), created_at = r.created_at,
    started_at = r.started_at, paused_at = r.paused_at, finished_at = r.finished_at,
    metrics = { latency_ms = r.latency_ms, tokens = r.tokens, cost = r.cost },
  }
end

-- record_of(exec_row, step_rows) -> the same record exec:record() builds
function M.record_of(r, step_rows)
  local by = {}
  for _, s in ipairs(step_rows) do by[s.step_id] = s end
  local steps = json.array()
  local cfg = r.config_snapshot or {}
  -- the declared steps, then those started at run time, in the order
  -- they were added
  local list = {}
  for _, step in ipairs(cfg.steps or {}) do list[#list + 1] = step end
  local dynamic = {}
  for _, s in ipairs(step_rows) do
    if s.definition ~= nil and s.definition ~= null then dynamic[#dynamic + 1] = s end
  end
  table.sort(dynamic, function(a, b) return a.step_index < b.step_index end)
  for _, s in ipairs(dynamic) do list[#list + 1] = s.definition end
  for i, step in ipairs(list) do
    local s = by[step.id] or {}
    local dyn = s.definition ~= nil and s.definition ~= null
    steps[i] = {
      id = step.id, name = step.name, status = s.status or "pending", attempts = s.attempts or 0,
      latency_ms = s.latency_ms, error = s.error, agent = step.agent, agent_version = s.agent_version,
      output = s.output, output_truncated = s.output_truncated or nil, tokens = s.tokens or 0,
      cost = s.cost or 0, answered_by = s.answered_by, compensation = s.compensation,
      approval = s.approval, started_at = s.started_at, finished_at = s.finished_at, input = s.input,
      reason = s.reason, dynamic = dyn or nil, parent = step.parent, item_index = step.item_index,
      cached = s.cached or nil, cached_from = s.cached_from, rate_wait_ms = s.rate_wait_ms,
    }
  end
  local rec = summary_of(r)
  rec.config, rec.strategy_version = r.config_name, r.script_versions and r.script_versions.strategy
  rec.input, rec.output, rec.answered_by, rec.consensus = r.input, r.output, r.answered_by, r.consensus
  rec.node_id, rec.claims = r.node_id, r.claims
  rec.steps = steps
  return rec
end

local function visible_sql(scope, args, where)
  if scope and not scope.admin then
    if scope.tenant_id ~= nil then
      args[#args + 1] = scope.tenant_id
      where[#where + 1] = "tenant_id = $" .. #args
    end
    if scope.user_id ~= nil then
      args[#args + 1] = scope.user_id
      where[#where + 1] = "user_id = $" .. #args
    end
  end
end

-- get_record(key, scope) -> record | nil | nil, err
function Store:get_record(key, scope)
  if type(key) ~= "string" or not key:lower():match(UUID) then return nil end
  local args, where = { key:lower() }, { "(id = $1::uuid OR trace_id = $1::uuid)" }
  visible_sql(scope, args, where)
  local res, err = self.pool:query("SELECT " .. EXEC_COLS .. " FROM orchestration_executions WHERE "
    .. table.concat(where, " AND "), unpack(args, 1, #args))
  if not res then return nil, err end
  local r = res.rows[1]
  if not r then return nil end
  local steps
  steps, err = self.pool:query("SELECT " .. STEP_COLS .. " FROM orchestration_step_runs WHERE execution_id = $1::uuid", r.id)
  if not steps then return nil, err end
  return M.record_of(r, steps.rows)
end

function Store:execution_config(key, scope)
  if type(key) ~= "string" or not key:lower():match(UUID) then return nil end
  local args, where = { key:lower() }, { "(id = $1::uuid OR trace_id = $1::uuid)" }
  visible_sql(scope, args, where)
  local res, err = self.pool:query("SELECT (SELECT snapshot FROM orchestration_config_snapshots s "
    .. "WHERE s.hash = e.config_hash) AS snapshot FROM orchestration_executions e WHERE "
    .. table.concat(where, " AND "), unpack(args, 1, #args))
  if not res then return nil, err end
  return res.rows[1] and res.rows[1].snapshot
end

function Store:list_executions(filter)
  filter = filter or {}
  local args, where = {}, {}
  local function add(col, v)
    if v == nil then return end
    args[#args + 1] = v
    where[#where + 1] = col .. " = $" .. #args
  end
  add("status", filter.status)
  add("session_id", filter.session_id)
  if filter.config_id ~= nil then
    args[#args + 1] = filter.config_id
    where[#where + 1] = "config_id = $" .. #args .. "::uuid"
  end
  if filter.config ~= nil then
    args[#args + 1] = filter.config
    where[#where + 1] = ("(config_name = $%d OR config_id::text = $%d)"):format(#args, #args)
  end
  add("user_id", filter.user_id)
  add("tenant_id", filter.tenant_id)
  if filter.since then
    args[#args + 1] = filter.since
    where[#where + 1] = "created_at >= to_timestamp($" .. #args .. ")"
  end
  if filter.before then
    args[#args + 1] = filter.before
    where[#where + 1] = "created_at < to_timestamp($" .. #args .. ")"
  end
  local w = #where > 0 and (" WHERE " .. table.concat(where, " AND ")) or ""
  local n = #args
  args[n + 1], args[n + 2] = filter.limit or 50, filter.offset or 0
  local res, err = self.pool:query(("SELECT %s, count(*) OVER () AS total, sum(tokens) OVER () AS sum_tokens, "
    .. "sum(cost) OVER () AS sum_cost FROM orchestration_executions%s "
    .. "ORDER BY created_at DESC, id DESC LIMIT $%d OFFSET $%d"):format(EXEC_COLS, w, n + 1, n + 2),
    unpack(args, 1, n + 2))
  if not res then return nil, err end
  local items, total, totals = json.array(), 0, { tokens = 0, cost = 0 }
  for i, r in ipairs(res.rows) do
    items[i] = summary_of(r)
    total = r.total
    totals.tokens, totals.cost = tonumber(r.sum_tokens) or 0, r.sum_cost or 0
  end
  if #res.rows == 0 and (filter.offset or 0) > 0 then
    -- Past the last page: the window functions saw no row.
    local c
    c, err = self.pool:query("SELECT count(*) AS n, coalesce(sum(tokens), 0) AS tokens, "
      .. "coalesce(sum(cost), 0) AS cost FROM orchestration_executions" .. w, unpack(args, 1, n))
    if not c then return nil, err end
    total = c.rows[1].n
    totals.tokens, totals.cost = tonumber(c.rows[1].tokens) or 0, c.rows[1].cost
  end
  return items, total, totals
end

-- stats(filter) -> the overview numbers (see chorus.store.stats), from two
-- grouped queries: executions by creation minute, status and config, and
-- finished steps by agent and latency bucket.
function Store:stats(filter)
  filter = filter or {}
  local now = native.time()
  local window = filter.window_s or 3600
  local since = stats_mod.window_start(now, window)
  local args, where = { since }, { "created_at >= to_timestamp($1)" }
  local swhere = { "s.finished_at >= to_timestamp($1)", "s.status IN ('completed', 'failed')",
    "s.latency_ms IS NOT NULL" }
  if filter.tenant_id ~= nil then
    args[#args + 1] = filter.tenant_id
    where[#where + 1] = "tenant_id = $" .. #args
    swhere[#swhere + 1] = "e.tenant_id = $" .. #args
  end
  if filter.user_id ~= nil then
    args[#args + 1] = filter.user_id
    where[#where + 1] = "user_id = $" .. #args
    swhere[#swhere + 1] = "e.user_id = $" .. #args
  end
  local n = #args
  local q1 = { ("SELECT (floor(extract(epoch FROM created_at) / 60) * 60)::float8 AS minute, status, config_name, "
    .. "count(*) AS n, coalesce(sum(tokens), 0)::float8 AS tokens, coalesce(sum(cost), 0) AS cost "
    .. "FROM orchestration_executions WHERE %s GROUP BY 1, 2, 3"):format(table.concat(where, " AND ")),
    unpack(args, 1, n) }
  q1.n = n
  local q2 = { ("SELECT s.agent, %s AS bucket, count(*) AS n, sum(s.latency_ms) AS sum_ms "
    .. "FROM orchestration_step_runs s JOIN orchestration_executions e ON e.id = s.execution_id "
    .. "WHERE %s GROUP BY 1, 2"):format(stats_mod.bucket_sql("s.latency_ms"), table.concat(swhere, " AND ")),
    unpack(args, 1, n) }
  q2.n = n
  local res, err = self.pool:batch({ q1, q2 })
  if not res then return nil, err end
  local acc = stats_mod.acc(since, math.floor(now / 60) * 60 + 60, window)
  for _, r in ipairs(res[1].rows) do
    acc:executions(r.minute, r.status, r.config_name, r.n, r.tokens, r.cost)
  end
  for _, r in ipairs(res[2].rows) do acc:steps(r.agent, r.bucket, r.n, r.sum_ms) end
  return acc:result()
end

-- Configs ---------------------------------------------------------------

local CONFIG_COLS = [[
id::text, name, description, strategy, steps, metadata, tenant_id, owner_id, is_active, version,
updated_by, extract(epoch FROM created_at) AS created_at, extract(epoch FROM updated_at) AS updated_at]]

local function config_of(r)
  if not r then return nil end
  r.is_global = r.tenant_id == nil
  r.metadata = r.metadata or {}
  return r
end

local function conflict(err, info, name)
  if info and info.code == "23505" then
    return nil, ("a config named '%s' already exists"):format(name), "conflict"
  end
  return nil, err
end

function Store:create_config(cfg, owner)
  owner = owner or {}
  local tenant_id = not owner.global and owner.tenant_id or nil
  local doc = validate.document(cfg)
  local id = native.uuid()
  local res, err, info = self.pool:batch({
    { [[INSERT INTO orchestration_configs (id, name, description, strategy, steps, metadata, tenant_id, owner_id)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)]],
      id, cfg.name, cfg.description, cfg.strategy, jsonb(doc.steps), jsonb(cfg.metadata or {}), tenant_id,
      owner.user_id, n = 8 },
    { [[INSERT INTO orchestration_config_versions (config_id, version, name, description, strategy, steps, metadata, created_by)
        SELECT id, version, name, description, strategy, steps, metadata, owner_id
        FROM orchestration_configs WHERE id = $1]], id },
    { "SELECT " .. CONFIG_COLS .. " FROM orchestration_configs WHERE id = $1", id },
  })
  if not res then return conflict(err, info, cfg.name) end
  return config_of(res[3].rows[1])
end

-- shared (see chorus.store.memory) changes nothing here: rows are fresh.
function Store:get_config(key, scope)
  if type(key) ~= "string" then return nil end
  local tenant = scope and scope.tenant_id
  local admin = scope and scope.admin
  local res, err
  if key:lower():match(UUID) then
    res, err = self.pool:query("SELECT " .. CONFIG_COLS .. [[ FROM orchestration_configs
      WHERE id = $1::uuid AND deleted_at IS NULL AND ($2 OR tenant_id IS NULL OR tenant_id = $3)]],
      key:lower(), admin == true, tenant)
    if not res then return nil, err end
    if res.rows[1] then return config_of(res.rows[1]) end
  end
  -- By name: the caller's tenant first, then the global one.
  res, err = self.pool:query("SELECT " .. CONFIG_COLS .. [[ FROM orchestration_configs
    WHERE name = $1 AND deleted_at IS NULL AND (tenant_id IS NULL OR tenant_id = $2)
    ORDER BY tenant_id IS NULL LIMIT 1]], key, tenant)
  if not res then return nil, err end
  return config_of(res.rows[1])
end

function Store:list_configs(filter)
  filter = filter or {}
  local args, where = {}, { "deleted_at IS NULL" }
  if filter.tenant_id ~= nil then
    args[#args + 1] = filter.tenant_id
    where[#where + 1] = "(tenant_id IS NULL OR tenant_id = $" .. #args .. ")"
  end
  for col, v in pairs({ owner_id = filter.owner_id, strategy = filter.strategy, is_active = filter.active }) do
    args[#args + 1] = v
    where[#where + 1] = col .. " = $" .. #args
  end
  if filter.search and filter.search ~= "" then
    -- strpos, not LIKE: the text is matched as it is (% and _ included).
    args[#args + 1] = filter.search:lower()
    where[#where + 1] = ("(strpos(lower(name), $%d) > 0 OR strpos(lower(coalesce(description, '')), $%d) > 0)")
      :format(#args, #args)
  end
  local w = " WHERE " .. table.concat(where, " AND ")
  local n = #args
  args[n + 1], args[n + 2] = filter.limit or 50, filter.offset or 0
  local res, err = self.pool:batch({
    { ("SELECT %s FROM orchestration_configs%s ORDER BY name, coalesce(tenant_id, '') LIMIT $%d OFFSET $%d")
        :format(CONFIG_COLS, w, n + 1, n + 2), unpack(args, 1, n + 2) },
    { "SELECT count(*) AS n FROM orchestration_configs" .. w, unpack(args, 1, n) },
  })
  if not res then return nil, err end
  local items = json.array()
  for i, r in ipairs(res[1].rows) do items[i] = config_of(r) end
  return items, res[2].rows[1].n
end

function Store:update_config(id, cfg, by)
  local doc = validate.document(cfg)
  local res, err, info = self.pool:batch({
    { [[UPDATE orchestration_configs SET name = $2, description = $3, strategy = $4, steps = $5::jsonb,
          metadata = coalesce($6::jsonb, metadata), version = version + 1, updated_at = now(), updated_by = $7,
          is_active = coalesce($8, is_active)
        WHERE id = $1::uuid AND deleted_at IS NULL]],
      id, cfg.name, cfg.description, cfg.strategy, jsonb(doc.steps), jsonb(cfg.metadata), by, cfg.is_active, n = 8 },
    { [[INSERT INTO orchestration_config_versions (config_id, version, name, description, strategy, steps, metadata, created_by)
        SELECT id, version, name, description, strategy, steps, metadata, $2 FROM orchestration_configs
        WHERE id = $1::uuid AND deleted_at IS NULL]], id, by, n = 2 },
    { "SELECT " .. CONFIG_COLS .. " FROM orchestration_configs WHERE id = $1::uuid AND deleted_at IS NULL", id },
  })
  if not res then return conflict(err, info, cfg.name) end
  local r = res[3].rows[1]
  if not r then return nil, "config not found", "not_found" end
  return config_of(r)
end

function Store:set_config_active(id, active, by)
  local res, err = self.pool:query("UPDATE orchestration_configs SET is_active = $2, updated_at = now(), updated_by = $3 "
    .. "WHERE id = $1::uuid AND deleted_at IS NULL RETURNING " .. CONFIG_COLS, id, active, by)
  if not res then return nil, err end
  local r = res.rows[1]
  if not r then return nil, "config not found", "not_found" end
  return config_of(r)
end

function Store:config_version(id, version)
  local res, err = self.pool:query([[SELECT config_id::text AS id, version, name, description, strategy, steps,
      metadata, created_by, extract(epoch FROM created_at) AS created_at
    FROM orchestration_config_versions WHERE config_id = $1::uuid AND version = $2]], id, version)
  if not res then return nil, err end
  return res.rows[1]
end

function Store:delete_config(id)
  local res, err = self.pool:query([[UPDATE orchestration_configs SET deleted_at = now(), is_active = false
    WHERE id = $1::uuid AND deleted_at IS NULL]], id)
  if not res then return nil, err end
  if res.affected == 0 then return nil, "config not found", "not_found" end
  return true
end

-- API keys --------------------------------------------------------------

function Store:create_key(k)
  local res, err = self.pool:query([[INSERT INTO chorus_api_keys (id, prefix, hash, tenant_id, user_id, role)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id::text, prefix, tenant_id, user_id, role, extract(epoch FROM created_at) AS created_at]],
    native.uuid(), k.prefix, k.hash, k.tenant_id, k.user_id, k.role)
  if not res then return nil, err end
  return res.rows[1]
end

function Store:find_key(hash)
  local res, err = self.pool:query([[SELECT id::text, prefix, tenant_id, user_id, role,
      extract(epoch FROM revoked_at) AS revoked_at FROM chorus_api_keys WHERE hash = $1]], hash)
  if not res then return nil, err end
  return res.rows[1]
end

function Store:list_keys(filter)
  local res, err = self.pool:query([[SELECT id::text, prefix, tenant_id, user_id, role,
      extract(epoch FROM created_at) AS created_at, extract(epoch FROM revoked_at) AS revoked_at
    FROM chorus_api_keys WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY created_at]],
    filter and filter.tenant_id)
  if not res then return nil, err end
  return res.rows
end

function Store:revoke_key(key)
  local res, err = self.pool:query([[UPDATE chorus_api_keys SET revoked_at = now()
    WHERE (id::text = $1 OR prefix = $1) AND revoked_at IS NULL]], key)
  if not res then return nil, err end
  if res.affected == 0 then return nil, "no such key", "not_found" end
  return true
end

return M
