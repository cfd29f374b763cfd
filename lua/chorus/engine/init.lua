-- chorus.engine: the pieces an execution needs, wired once per process:
-- the registry (with optional hot reload), the price table (layered over
-- the same directories, reloaded with them), the store, the event bus. The
-- CLI uses it for `chorus run`; the server will embed the same object.
local registry = require "chorus.engine.registry"
local events = require "chorus.events.bus"
local validate = require "chorus.engine.validate"
local execution = require "chorus.engine.execution"
local prices = require "chorus.llm.prices"

local Engine = {}
Engine.__index = Engine

local M = {}

-- new({scripts = {dir...}, store = store, watch = bool, sandbox = bool})
-- -> engine | nil, err, code (code "bad_scripts": a --scripts directory
-- does not exist) (sandbox: see chorus.engine.script_env)
function M.new(opts)
  opts = opts or {}
  local dirs_ok, derr = registry.check_dirs(opts.scripts)
  if not dirs_ok then return nil, derr, "bad_scripts" end
  local self = setmetatable({
    registry = registry.new({ dirs = registry.default_dirs(opts.scripts), sandbox = opts.sandbox }),
    bus = opts.bus or events.new(),
    store = opts.store or require("chorus.store.memory").new(opts.store_opts),
  }, Engine)
  self.registry:load()
  prices.use(self.registry.dirs, { watch = opts.watch })
  if opts.watch then
    local ok, err = self.registry:watch()
    if not ok then return nil, err end
  end
  return self
end

-- validate(doc) -> cfg | nil, errors (against the current registry)
function Engine:validate(doc)
  return validate.config(doc, self.registry:snapshot())
end

-- prepare(doc [, key]) -> cfg | nil, errors: validate(doc), remembered
-- under key (a stored config's "id:version", a claimed row's snapshot)
-- until the scripts reload. The one config cache: the REST and WebSocket
-- execute routes and the nodes all prepare through it (validating a
-- stored config on every execute would cost more than running it).
-- Bounded: past MAX_PREPARED keys it starts again.
M.MAX_PREPARED = 1000

function Engine:prepare(doc, key)
  if key == nil then return self:validate(doc) end
  local snap = self.registry:snapshot()
  local cache = self.prepared
  if not cache or cache.generation ~= snap.generation or cache.n >= M.MAX_PREPARED then
    cache = { generation = snap.generation, n = 0, cfg = setmetatable({}, { __mode = "v" }) }
    self.prepared = cache
  end
  local cfg = cache.cfg[key]
  if cfg then return cfg end
  local errs
  cfg, errs = validate.config(doc, snap)
  if not cfg then return nil, errs end
  cache.cfg[key], cache.n = cfg, cache.n + 1
  return cfg
end

-- execute(cfg, input, opts) -> a started execution. The execution pins the
-- registry snapshot current now: a reload later does not affect it.
-- opts: see chorus.engine.execution's create, and detached (no task
-- waits for it).
function Engine:execute(cfg, input, opts)
  return execution.create(cfg, input, self.registry:snapshot(), self.store, self.bus, opts):start(opts)
end

function Engine:close()
  self.registry:unwatch()
  prices.unwatch()
end

return M
