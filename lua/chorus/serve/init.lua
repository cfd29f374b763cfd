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
local metrics_mod = require "chorus.metrics"
local http = require "chorus.http.server"
local native = require "chorus.native"
local sched = require "chorus.sched"
local log = require "chorus.log"

local M = {}

local Server = {}
Server.__index = Server

function M.start(opts)
  -- What no log record may show, whichever way it came in.
  log.secret(opts.admin_key)
  log.secret(opts.callback_secret)
  log.secret_url(opts.db)
  log.secret_url(opts.redis)
  local node_id = ("%s:%d:%s"):format(native.hostname(), native.pid(), native.random_hex(4))
  local svc, err, code = require("chorus.serve.services").build(opts, node_id)
  if not svc then return nil, err, code end
  if opts.no_auth then
    log.warn("serve: --no-auth: no API keys are checked, every request acts as an admin; never expose this port")
  end

  -- Metrics (docs/metrics.md): the engine's, the process's, this server's.
  local reg = metrics_mod.new()
  require("chorus.metrics.engine").register(reg, svc.engine)
  require("chorus.metrics.process").register(reg)
  svc.metrics = reg
  reg:counter("chorus_log_lines_dropped_total", "Log lines dropped because stderr did not take them in time.", {},
    native.log_dropped)
  local self = setmetatable({ svc = svc, opts = opts }, Server)
  local hm = require("chorus.metrics.serve").register(reg, svc, self)
  svc.ready = require("chorus.serve.health").ready(svc, self)

  local app = api.new(svc)
  self.app = app
  local srv, lerr = http.listen({ host = opts.host or "127.0.0.1", port = opts.port or 8080,
    reuseport = opts.reuseport, max_body_bytes = opts.max_body_bytes,
    max_client_connections = opts.max_client_connections }, require("chorus.serve.dispatch").handler(app, hm))
  if not srv then
    self:stop({ grace_ms = 0 })
    return nil, lerr
  end
  self.http, self.port = srv, srv.port
  log.info("serve: listening on %s:%d (%s store%s%s)", opts.host or "127.0.0.1", srv.port,
    svc.pool and "postgres" or "memory", svc.bridge and ", redis events" or "", opts.no_auth and ", NO AUTH" or "")
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
  -- The runner's own shutdown: a node hands what still runs to the
  -- others; in memory the executions get the grace, then are cancelled,
  -- and the webhooks of what ended the time left.
  local deadline = sched.now() + grace
  svc.runner:stop({ grace_ms = grace })
  if not svc.pool then
    svc.deliverer:wait(math.max(0, deadline - sched.now()))
    svc.deliverer:stop()
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
