-- chorus.engine.registry: strategies, agents and aggregation rules loaded from
-- script directories, with hot reload.
--
-- Directories are layered: the built-ins first, then each --scripts DIR;
-- a later directory wins for the same name. Each directory may hold
-- strategies/*.lua, agents/*.lua and strategies/aggregators/*.lua.
--
-- A file is loaded and checked (contract below) before it may replace the
-- version in use; a broken file never replaces a working one: its error,
-- with file:line, is kept in snapshot.errors and counted. Every (re)load
-- builds a complete new snapshot and swaps one reference, so executions
-- that pinned the old snapshot keep the closures they started with.
--
-- Contract: a file returns a table with `name` equal to the file's base
-- name, an optional `version` string and `description`, an optional
-- `schema` (chorus.schema) for its params, and its hook: strategies
-- `run(ctx, steps, settings)`, agents `call(input, ctx, step)`,
-- aggregators `aggregate(results, opts)`.
--
-- An entry's version is the first 12 hex digits of the sha256 of the
-- file's content: that is what step runs record as agent_version.
local native = require "chorus.native"
local schema = require "chorus.schema"
local sched = require "chorus.sched"
local log = require "chorus.log"
local script_env = require "chorus.engine.script_env"

local M = {}

M.KINDS = {
  { kind = "strategies", dir = "strategies", hook = "run" },
  { kind = "agents", dir = "agents", hook = "call" },
  { kind = "aggregators", dir = "strategies/aggregators", hook = "aggregate" },
}

local Registry = {}
Registry.__index = Registry

-- new({dirs = {...}, sandbox = bool}) -> registry (call :load() next).
-- sandbox: scripts of every directory but the first (the built-ins) are
-- loaded without os, io, ffi, debug (chorus.engine.script_env).
function M.new(opts)
  assert(type(opts) == "table" and type(opts.dirs) == "table", "registry.new: dirs required")
  return setmetatable({
    dirs = opts.dirs, generation = 0, reloads = 0, reload_errors = 0,
    current = nil, watches = {}, sandbox = opts.sandbox or false,
  }, Registry)
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- Loads and checks one file. Returns entry or nil, err. sandbox: load it
-- without os, io, ffi, debug (chorus.engine.script_env). Each script gets its own
-- environment (a stray global stays in it) and runs with the JIT off, so
-- the watchdog can interrupt it.
function M.load_file(kind, path, name, sandbox)
  local spec
  for _, k in ipairs(M.KINDS) do if k.kind == kind then spec = k end end
  assert(spec, "unknown kind " .. tostring(kind))
  local src, rerr = read_file(path)
  if not src then return nil, rerr end
  local chunk, cerr = script_env.load(path, src, sandbox)
  if not chunk then return nil, cerr end
  native.script_enter() -- a file that loops at load time is interrupted
  local ok, mod = xpcall(chunk, debug.traceback)
  native.script_leave()
  if not ok then return nil, tostring(mod) end
  if type(mod) ~= "table" then
    return nil, ("%s: must return a table, got %s"):format(path, type(mod))
  end
  if mod.name ~= name then
    return nil, ("%s: name must be '%s' (the file name), got %s"):format(path, name,
      mod.name == nil and "nil" or ("'" .. tostring(mod.name) .. "'"))
  end
  if type(mod[spec.hook]) ~= "function" then
    return nil, ("%s: missing function '%s'"):format(path, spec.hook)
  end
  if mod.version ~= nil and type(mod.version) ~= "string" then
    return nil, ("%s: version must be a string"):format(path)
  end
  if mod.schema ~= nil then
    local sok, serr = schema.check_schema(mod.schema)
    if not sok then return nil, ("%s: bad schema: %s"):format(path, tostring(serr)) end
  end
  return {
    kind = kind, name = name, file = path, module = mod,
    version = native.sha256(src):sub(1, 12),
    declared_version = mod.version, description = mod.description,
    loaded_at = native.time(),
  }
end

-- Lists name -> {path, layer} of the *.lua files of one kind across the
-- layers (layer 1: the built-ins).
local function scan(dirs, spec)
  local files = {}
  for layer, d in ipairs(dirs) do
    local dir = d .. "/" .. spec.dir
    local list = native.list_dir(dir)
    for _, ent in ipairs(list or {}) do
      local name = ent.name:match("^([%w_%-%.]+)%.lua$")
      if name and ent.type ~= "dir" then files[name] = { dir .. "/" .. ent.name, layer } end
    end
  end
  return files
end

-- A load error as the registry shows it: the file relative to its script
-- directory (dir), the line when the message names one, and the message
-- with the directory's prefix taken out of it.
local function load_error(dir, kind, name, path, msg)
  local rel = path:sub(#dir + 2)
  msg = tostring(msg)
  local prefix = (dir .. "/"):gsub("%p", "%%%0")
  local line = tonumber(msg:match(rel:gsub("%p", "%%%0") .. ":(%d+):"))
  return { kind = kind, name = name, dir = dir, file = rel, line = line, message = (msg:gsub(prefix, "")) }
end

-- load() / reload(): builds a new snapshot. A file whose content did not
-- change keeps its entry; a broken file keeps the previous entry (if any).
-- Returns the snapshot and the list of errors of this load.
function Registry:load()
  local old = self.current
  local snap = { generation = self.generation + 1, errors = {}, loaded_at = native.time() }
  for _, spec in ipairs(M.KINDS) do
    local entries = {}
    snap[spec.kind] = entries
    for name, found in pairs(scan(self.dirs, spec)) do
      local path = found[1]
      local prev = old and old[spec.kind][name]
      local entry, err = M.load_file(spec.kind, path, name, self.sandbox and found[2] > 1)
      if entry and prev and prev.version == entry.version and prev.file == path then
        entry = prev -- unchanged: keep the same closures
      end
      if entry then
        entries[name] = entry
      else
        snap.errors[#snap.errors + 1] = load_error(self.dirs[found[2]], spec.kind, name, path, err)
        if prev then entries[name] = prev end
      end
    end
  end
  self.generation = snap.generation
  self.current = snap
  if old then self.reloads = self.reloads + 1 end
  self.reload_errors = self.reload_errors + #snap.errors
  for _, e in ipairs(snap.errors) do
    log.warn("registry: %s %s not loaded (%s/%s): %s", e.kind, e.name, e.dir, e.file, e.message)
  end
  return snap, snap.errors
end
Registry.reload = Registry.load

-- snapshot() -> the current snapshot (what a new execution pins).
function Registry:snapshot()
  return self.current or (self:load())
end

-- list() -> a JSON-ready description of every entry and error.
function Registry:list()
  local snap = self:snapshot()
  local out = { generation = snap.generation, errors = snap.errors }
  for _, spec in ipairs(M.KINDS) do
    local items = {}
    for name, e in pairs(snap[spec.kind]) do
      local dir = e.file:match("^(.*)/" .. spec.dir:gsub("%p", "%%%0") .. "/[^/]+$")
      items[#items + 1] = { name = name, version = e.version, declared_version = e.declared_version,
        file = dir and e.file:sub(#dir + 2) or e.file, dir = dir, description = e.description }
    end
    table.sort(items, function(a, b) return a.name < b.name end)
    out[spec.kind] = items
  end
  return out
end

-- watch({debounce_ms = 50}): reload when a file in a script directory
-- changes (editors save in bursts: events are coalesced). Each script
-- directory is watched itself too, so an agents/ or strategies/ (and its
-- aggregators/) made after the start is watched as soon as it appears.
-- Also reloads on SIGHUP. Returns true or nil, err for the first
-- directory that failed.
function Registry:watch(opts)
  local debounce = opts and opts.debounce_ms or 50
  local pending = false
  self.watched = self.watched or {}
  local function schedule()
    if pending then return end
    pending = true
    sched.spawn_with({ detached = true }, function()
      sched.sleep(debounce)
      pending = false
      self:watch_dirs() -- a kind directory may have appeared
      self:reload()
      if self.on_reload then self.on_reload(self.current) end
    end)
  end
  self.schedule_reload = schedule
  local ok, err = self:watch_dirs()
  self.watches[#self.watches + 1] = native.on_signal("SIGHUP", function()
    log.info("registry: SIGHUP, reloading")
    schedule()
  end)
  if not ok then return nil, err end
  return true
end

-- watch_dirs(): watches every script directory and each kind directory
-- in it that exists and is not watched yet. true | nil, first error.
function Registry:watch_dirs()
  local first_err
  local function add(dir, filter)
    if self.watched[dir] or not native.list_dir(dir) then return end
    local h, err = native.watch(dir, function(file)
      if file == nil or filter(file) then self.schedule_reload() end
    end)
    if h then
      self.watched[dir] = true
      self.watches[#self.watches + 1] = h
    else
      first_err = first_err or err
    end
  end
  local function lua_file(file) return file:match("%.lua$") ~= nil end
  local function any() return true end
  for _, d in ipairs(self.dirs) do
    add(d, any)
    add(d .. "/strategies", any) -- aggregators/ appears in here
    for _, spec in ipairs(M.KINDS) do add(d .. "/" .. spec.dir, lua_file) end
  end
  if first_err then return nil, first_err end
  return true
end

function Registry:unwatch()
  for _, h in ipairs(self.watches) do h:close() end
  self.watches, self.watched = {}, {}
end

-- check_dirs(extra) -> true | nil, err: every overlay directory exists
-- (a typo in --scripts must not silently run the built-ins alone).
function M.check_dirs(extra)
  for _, d in ipairs(extra or {}) do
    if type(d) ~= "string" or not native.list_dir(d) then
      return nil, ("--scripts %s: no such directory"):format(tostring(d))
    end
  end
  return true
end

-- default_dirs(extra) -> the built-in directory followed by the overlays.
function M.default_dirs(extra)
  local dirs = { native.home }
  for _, d in ipairs(extra or {}) do dirs[#dirs + 1] = d end
  return dirs
end

return M
