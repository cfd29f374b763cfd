-- chorus.serve.services: what one `chorus serve` process runs on, built
-- from its options: the store (in memory, or PostgreSQL), the engine over
-- the script directories, the runner (chorus.run.memory, or a node of the
-- cluster that claims executions), the webhook deliverer, the front door
-- every route starts executions through (chorus.run.service), the event
-- hub (and the Redis bridge between nodes), the step cache and rate
-- limits' cluster, and the API keys.
--
--   build(opts, node_id) -> svc | nil, err, code   (opts: chorus.serve's)
--   svc: {engine, store, pool, runner, front, deliverer, hub, bridge, auth,
--         node_id, unlog}
local engine_mod = require "chorus.engine"
local auth_mod = require "chorus.api.auth"
local hub_mod = require "chorus.events.hub"
local service = require "chorus.run.service"
local log = require "chorus.log"

local M = {}

local function open_store(opts)
  if not opts.db then return { store = require("chorus.store.memory").new() } end
  return require("chorus.store.open").open(opts.db, { pool_size = opts.pool_size or 16 })
end

-- With PostgreSQL a node runs what any node submits and the outbox holds
-- the webhooks; in memory this process runs what it accepts and delivers
-- the webhooks itself.
local function runner(svc, opts)
  local callbacks = require "chorus.run.callbacks"
  if svc.pool then
    svc.runner = require("chorus.run.node").new({ engine = svc.engine, pool = svc.pool, node_id = svc.node_id,
      concurrency = opts.concurrency, lease_ms = opts.lease_ms, max_pending = opts.max_pending }):run({ url = opts.db })
    svc.deliverer = callbacks.deliverer(svc.pool, { secret = opts.callback_secret }):run()
  else
    svc.deliverer = callbacks.local_deliverer({ secret = opts.callback_secret })
    svc.runner = require("chorus.run.memory").new({ engine = svc.engine, max_inflight = opts.max_inflight,
      on_end = function(exec) svc.deliverer:enqueue(exec) end })
  end
end

-- Keys from the store; --no-auth serves everyone as an admin; in memory
-- opts.admin_key is an admin of tenant "default".
local function keys(svc, opts)
  local anonymous = opts.no_auth and { tenant_id = "default", user_id = "anonymous", role = "admin", admin = true } or nil
  svc.auth = auth_mod.new({ store = svc.store, anonymous = anonymous })
  if opts.admin_key and not svc.pool then
    svc.store:create_key({ prefix = opts.admin_key:sub(1, 12), hash = auth_mod.hash(opts.admin_key),
      tenant_id = "default", user_id = "admin", role = "admin" })
  end
end

function M.build(opts, node_id)
  local d, err = open_store(opts)
  if not d then return nil, err end
  local engine, eerr, ecode = engine_mod.new({ scripts = opts.scripts, store = d.store, watch = opts.watch ~= false,
    sandbox = opts.sandbox })
  if not engine then
    if d.pool then d.pool:close() end
    return nil, eerr, ecode
  end
  local svc = { engine = engine, store = d.store, pool = d.pool, node_id = node_id }
  if not d.pool then d.store.node_id = node_id end -- memory: the node of its records
  -- Every record names this node; executions are recorded from before
  -- the first one is claimed.
  log.set_field("node", node_id)
  svc.unlog = require("chorus.log.events").attach(engine)
  runner(svc, opts)
  svc.front = service.new({ engine = engine, store = d.store, runner = svc.runner })
  if opts.redis then svc.bridge = require("chorus.events.redis_bridge").new({ url = opts.redis }) end
  -- The step cache and rate limits are the cluster's (one Redis) or, with
  -- none, this process's.
  require("chorus.run.cluster").configure({ redis_url = opts.redis })
  svc.hub = hub_mod.new({ bus = engine.bus, node_id = node_id, bridge = svc.bridge })
  if svc.bridge then svc.bridge:start(svc.hub) end
  keys(svc, opts)
  return svc
end

return M
