-- chorus.registry: strategies, agents and aggregation rules loaded from
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
local script_env = require "chorus.script_env"

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
-- loaded without os, io, ffi, debug (chorus.script_env).
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
-- without os, io, ffi, debug (chorus.script_env). Each script gets its own
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
        snap.errors[#snap.errors + 1] = { kind = spec.kind, name = name, file = path, message = err }
        if prev then entries[name] = prev end
      end
    end
  end
  self.generation = snap.generation
  self.current = snap
  if old then self.reloads = self.reloads + 1 end
  self.reload_errors = self.reload_errors + #snap.errors
  for _, e in ipairs(snap.errors) do
    log.warn("registry: %s %s not loaded: %s", e.kind, e.name, e.message)
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
      items[#items + 1] = { name = name, version = e.version, declared_version = e.declared_version,
        file = e.file, description = e.description }
    end
    table.sort(items, function(a, b) return a.name < b.name end)
    out[spec.kind] = items
  end
  return out
end

-- watch({debounce_ms = 50}): reload when a file in a script directory
-- changes (editors save in bursts: events are coalesced). Also reloads on
-- SIGHUP. Returns true or nil, err for the first directory that failed.
function Registry:watch(opts)
  local debounce = opts and opts.debounce_ms or 50
  local pending = false
  local function schedule()
    if pending then return end
    pending = true
    sched.spawn_with({ detached = true }, function()
      sched.sleep(debounce)
      pending = false
      self:reload()
      if self.on_reload then self.on_reload(self.current) end
    end)
  end
  local first_err
  for _, d in ipairs(self.dirs) do
    for _, spec in ipairs(M.KINDS) do
      local dir = d .. "/" .. spec.dir
      if native.list_dir(dir) then
        local h, err = native.watch(dir, function(file)
          if file == nil or file:match("%.lua$") then schedule() end
        end)
        if h then self.watches[#self.watches + 1] = h else first_err = first_err or err end
      end
    end
  end
  self.watches[#self.watches + 1] = native.on_signal("SIGHUP", function()
    log.info("registry: SIGHUP, reloading")
    schedule()
  end)
  if first_err then return nil, first_err end
  return true
end

function Registry:unwatch()
  for _, h in ipairs(self.watches) do h:close() end
  self.watches = {}
end

-- default_dirs(extra) -> the built-in directory followed by the overlays.
function M.default_dirs(extra)
  local dirs = { native.home }
  for _, d in ipairs(extra or {}) do dirs[#dirs + 1] = d end
  return dirs
end

return M
