-- chorus.serve: one `chorus serve` process: the REST API, the WebSocket
-- endpoints, /metrics, health, over either the in-memory store or
-- PostgreSQL (then also a node that claims and runs executions), with the
-- Redis event bus when a Redis URL is given.
--
--   server.start(opts) -> srv | nil, err
--     opts: host, port, reuseport, db (URL), redis (URL), scripts (dirs),
--     no_auth, admin_key (memory mode: a key accepted as admin of tenant
--     "default"), concurrency, lease_ms, max_body_bytes, callback_secret,
--     max_inflight (memory: executions running at most), max_pending
--     (PostgreSQL: the backlog past which submits get 429),
--     max_client_connections (per client address), sandbox
--   srv.port; srv:stop({grace_ms}) (graceful: stop accepting, let
--   executions reach a durable point, hand the rest to other nodes)
local api = require "chorus.api"
local ws = require "chorus.api.ws"
local auth_mod = require "chorus.api.auth"
local engine_mod = require "chorus.engine"
local metrics_mod = require "chorus.metrics"
local hub_mod = require "chorus.events.hub"
local http = require "chorus.http.server"
local native = require "chorus.native"
local sched = require "chorus.sched"
local log = require "chorus.log"
local access = require("chorus.log.access").record
local now = native.now

local M = {}

local Server = {}
Server.__index = Server

local function open_store(opts)
  if not opts.db then
    return { store = require("chorus.store.memory").new() }
  end
  local d, err = require("chorus.cli.db").open(opts.db, { pool_size = opts.pool_size or 16 })
  if not d then return nil, err end
  return d
end

function M.start(opts)
  -- What no log record may show, whichever way it came in.
  log.secret(opts.admin_key)
  log.secret(opts.callback_secret)
  log.secret_url(opts.db)
  log.secret_url(opts.redis)
  local d, err = open_store(opts)
  if not d then return nil, err end
  local engine, eerr, ecode = engine_mod.new({ scripts = opts.scripts, store = d.store, watch = opts.watch ~= false,
    sandbox = opts.sandbox })
  if not engine then
    if d.pool then d.pool:close() end
    return nil, eerr, ecode
  end
  local node_id = ("%s:%d:%s"):format(native.hostname(), native.pid(), native.random_hex(4))
  local svc = { engine = engine, store = d.store, pool = d.pool, node_id = node_id }
  if not d.pool then d.store.node_id = node_id end -- memory: the node of its records
  -- Every record names this node; executions are recorded from before
  -- the first one is claimed.
  log.set_field("node", node_id)
  svc.unlog = require("chorus.log.events").attach(engine)
  if opts.no_auth then
    log.warn("serve: --no-auth: no API keys are checked, every request acts as an admin; never expose this port")
  end

  if d.pool then
    svc.runner = require("chorus.run.node").new({ engine = engine, pool = d.pool, node_id = node_id,
      concurrency = opts.concurrency, lease_ms = opts.lease_ms, max_pending = opts.max_pending }):run({ url = opts.db })
    svc.deliverer = require("chorus.run.callbacks").deliverer(d.pool, { secret = opts.callback_secret }):run()
  else
    -- In memory the process delivers webhooks itself (there is no outbox).
    svc.deliverer = require("chorus.run.callbacks").local_deliverer({ secret = opts.callback_secret })
    svc.runner = require("chorus.run.memory").new({ engine = engine, max_inflight = opts.max_inflight,
      on_end = function(exec) svc.deliverer:enqueue(exec) end })
  end

  if opts.redis then
    svc.bridge = require("chorus.events.redis_bridge").new({ url = opts.redis })
  end
  -- The step cache and rate limits are the cluster's (one Redis) or, with
  -- none, this process's.
  require("chorus.run.cluster").configure({ redis_url = opts.redis })
  svc.hub = hub_mod.new({ bus = engine.bus, node_id = node_id, bridge = svc.bridge })
  if svc.bridge then svc.bridge:start(svc.hub) end

  -- Auth: keys from the store; --no-auth serves everyone as an admin.
  local anonymous = opts.no_auth and { tenant_id = "default", user_id = "anonymous", role = "admin", admin = true } or nil
  svc.auth = auth_mod.new({ store = d.store, anonymous = anonymous })
  if opts.admin_key and not d.pool then
    d.store:create_key({ prefix = opts.admin_key:sub(1, 12), hash = auth_mod.hash(opts.admin_key),
      tenant_id = "default", user_id = "admin", role = "admin" })
  end

  -- Metrics (docs/metrics.md): the engine's, the process's, this server's.
  local reg = metrics_mod.new()
  require("chorus.metrics.engine").register(reg, engine)
  require("chorus.metrics.process").register(reg)
  svc.metrics = reg
  reg:counter("chorus_log_lines_dropped_total", "Log lines dropped because stderr did not take them in time.", {},
    native.log_dropped)
  local self = setmetatable({ svc = svc, opts = opts }, Server)
  local hm = require("chorus.metrics.serve").register(reg, svc, self)

  svc.ready = function()
    local checks, ok = {}, true
    if d.pool then
      local r, perr = d.pool:query("SELECT 1")
      checks.database = r and "ok" or tostring(perr)
      ok = ok and r ~= nil
    end
    if svc.bridge then
      local c = svc.bridge:connected()
      checks.redis = c and "ok" or "disconnected"
      ok = ok and c
    end
    if self.stopping then checks.shutdown = "in progress" ok = false end
    return ok, checks
  end

  local app = api.new(svc)
  self.app = app
  local srv, lerr = http.listen({ host = opts.host or "127.0.0.1", port = opts.port or 8080,
    reuseport = opts.reuseport, max_body_bytes = opts.max_body_bytes,
    max_client_connections = opts.max_client_connections }, function(req)
    local t0 = now()
    if req.is_websocket or ws.handles(req.path) then
      local s, h, b = ws.handle(svc, req)
      hm:websocket(req, s, t0)
      access(req, s or 101, t0)
      return s, h, b
    end
    local s, h, b = app:handle(req)
    hm:request(req, s, t0)
    access(req, s, t0)
    return s, h, b
  end)
  if not srv then
    self:stop({ grace_ms = 0 })
    return nil, lerr
  end
  self.http, self.port = srv, srv.port
  log.info("serve: listening on %s:%d (%s store%s%s)", opts.host or "127.0.0.1", srv.port,
    d.pool and "postgres" or "memory", svc.bridge and ", redis events" or "", opts.no_auth and ", NO AUTH" or "")
  local shown = opts.host or "127.0.0.1"
  if shown == "0.0.0.0" or shown == "::" then shown = native.hostname() end
  log.info("serve: admin page at http://%s:%d/admin/", shown:find(":", 1, true) and ("[" .. shown .. "]") or shown, srv.port)
  return self
end

-- stop({grace_ms}): graceful shutdown.
function Server:stop(opts)
  if self.stopped then return end
  self.stopping = true
  local grace = opts and opts.grace_ms or 10000
  local svc = self.svc
  if self.http then self.http:close({ grace_ms = math.min(grace, 5000) }) end
  if svc.deliverer and svc.pool then svc.deliverer:stop() end -- the outbox keeps the rest
  if svc.runner then
    if svc.runner.stop then
      svc.runner:stop({ grace_ms = grace })
    else
      -- Memory executions cannot outlive the process: give them the grace.
      local deadline = sched.now() + grace
      local live = function()
        for _, e in pairs(svc.store.by_id) do
          if not e.finalized then return true end
        end
      end
      while live() and sched.now() < deadline do sched.sleep(20) end
      svc.runner:close()
      -- Webhooks of what ended: the time left of the grace, then dropped
      -- (and logged as such).
      svc.deliverer:wait(math.max(0, deadline - sched.now()))
      svc.deliverer:stop()
    end
  end
  if svc.bridge then
    sched.sleep(20) -- let the last events go out
    svc.bridge:stop()
  end
  svc.engine:close()
  if svc.pool then svc.pool:close() end
  if svc.unlog then svc.unlog() end
  self.stopped = true
end

return M
