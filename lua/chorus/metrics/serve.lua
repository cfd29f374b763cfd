-- chorus.metrics.serve: the series of one `chorus serve` process beyond
-- its engine's: HTTP server and WebSocket counts, admission (executions
-- in flight and the queue), webhook deliveries, and with PostgreSQL and
-- Redis their group commit, pool and event bridge. Most are read from
-- the components' own stats tables at scrape time (counters where the
-- count only grows).
--
--   require("chorus.metrics.serve").register(reg, svc, server)
--     -> chorus.metrics.http observer (server.lua times every request)
--   svc: {runner, deliverer, pool, store, bridge}; server.http is read
--   when scraped (it is listening by then).
local http_metrics = require "chorus.metrics.http"
local sched = require "chorus.sched"

local M = {}

-- The cluster's backlog is counted in PostgreSQL at most this often (a
-- scrape every second from several Prometheus servers costs one query).
local PENDING_EVERY_MS, PENDING_TIMEOUT_MS = 1000, 1000
local PENDING = [[SELECT count(*) AS n FROM (SELECT 1 FROM orchestration_executions
  WHERE active AND status = 'pending' LIMIT $1) q]]

local function http_series(reg, server)
  local function stat(name)
    return function()
      local srv = server.http
      return srv and srv:stats()[name] or nil
    end
  end
  reg:gauge("chorus_http_connections", "Open HTTP connections (WebSockets included).", {}, stat("connections_active"))
  reg:counter("chorus_http_connections_opened_total", "HTTP connections accepted.", {}, stat("connections_total"))
  reg:counter("chorus_http_connections_rejected_total",
    "HTTP connections refused at once (over the server's or one client address's connection limit).", {},
    stat("connections_rejected"))
  reg:gauge("chorus_websockets", "Open WebSocket connections.", {}, stat("websockets_active"))
  reg:counter("chorus_websockets_opened_total", "WebSocket connections upgraded.", {}, stat("websockets_total"))
  reg:counter("chorus_http_received_bytes_total", "Bytes received from HTTP clients.", {}, stat("bytes_in"))
  reg:counter("chorus_http_sent_bytes_total", "Bytes sent to HTTP clients.", {}, stat("bytes_out"))
  reg:counter("chorus_http_handler_errors_total", "Requests whose handler raised (answered 500, logged).", {},
    stat("handler_errors"))
end

local function admission_series(reg, svc)
  local runner = svc.runner
  if not svc.pool then
    -- Memory: executions start at once, up to --max-inflight.
    reg:gauge("chorus_executions_in_flight", "Executions started and not yet ended in this process.", {},
      function() return runner.inflight end)
    reg:gauge("chorus_executions_in_flight_limit",
      "Executions this process runs at most (--max-inflight; more are answered 429).", {},
      function() return runner.max_inflight end)
    return
  end
  reg:gauge("chorus_executions_in_flight", "Executions this node has claimed and runs now.", {},
    function() return runner.nrunning end)
  reg:gauge("chorus_executions_in_flight_limit", "Executions this node runs at most (--concurrency).", {},
    function() return runner.concurrency end)
  local pool, n, at = svc.pool, nil, nil
  reg:gauge("chorus_executions_pending",
    "The queue: executions in PostgreSQL waiting for any node, counted up to --max-pending + 1.", {}, function()
      local t = sched.now()
      if not at or t - at >= PENDING_EVERY_MS then
        -- Bounded: with the database down, the scrape still answers (this
        -- series absent) before Prometheus's timeout.
        local ok, r = sched.with_deadline(PENDING_TIMEOUT_MS, pool.query, pool, PENDING, runner.max_pending + 1)
        n, at = ok and r and tonumber(r.rows[1].n) or nil, t
      end
      return n
    end)
  reg:gauge("chorus_executions_pending_limit",
    "The backlog of pending executions past which submits are answered 429 (--max-pending).", {},
    function() return runner.max_pending end)
end

local function postgres_series(reg, svc)
  local stats = svc.store.committer.stats
  local function s(k) return function() return stats[k] end end
  reg:counter("chorus_store_commits_total", "Group commits (transactions of batched writes) made.", {}, s("batches"))
  reg:counter("chorus_store_records_total", "Rows written through group commit.", {}, s("records"))
  reg:counter("chorus_store_commit_retries_total", "Group commits retried after a failure.", {}, s("retries"))
  reg:counter("chorus_store_commit_failures_total", "Group commits that failed for good (their writes refused).", {},
    s("failures"))
  local pool = svc.pool
  local function p(k) return function() return pool:stats()[k] end end
  reg:gauge("chorus_db_pool_size", "PostgreSQL connections the pool opens at most.", {}, p("size"))
  reg:gauge("chorus_db_pool_open_connections", "PostgreSQL connections open.", {}, p("open"))
  reg:gauge("chorus_db_pool_idle_connections", "PostgreSQL connections open and idle.", {}, p("idle"))
  reg:gauge("chorus_db_pool_waiting_tasks", "Tasks waiting for a PostgreSQL connection.", {}, p("waiting"))
end

local function redis_series(reg, bridge)
  local stats = bridge.stats
  reg:counter("chorus_events_published_total", "Events published to Redis.", {}, function() return stats.published end)
  reg:counter("chorus_events_lost_total", "Events that could not be published to Redis.", {},
    function() return stats.lost end)
  reg:counter("chorus_events_received_total", "Events of other nodes received from Redis.", {},
    function() return stats.received end)
  reg:gauge("chorus_redis_connected", "1 when the event bus is connected to Redis.", {},
    function() return bridge:connected() and 1 or 0 end)
end

local OUTCOMES = { "delivered", "retried", "failed" }

function M.register(reg, svc, server)
  local hm = http_metrics.new(reg)
  http_series(reg, server)
  admission_series(reg, svc)
  if svc.deliverer then
    local stats = svc.deliverer.stats
    reg:counter("chorus_webhook_deliveries_total",
      "Webhook delivery attempts by outcome: delivered (answered 2xx), retried (failed, another attempt is "
        .. "scheduled), failed (failed and given up).", { "outcome" }, function()
        local rows = {}
        for i, o in ipairs(OUTCOMES) do rows[i] = { o, stats[o] } end
        return rows
      end)
  end
  if svc.pool then postgres_series(reg, svc) end
  if svc.bridge then redis_series(reg, svc.bridge) end
  return hm
end

return M
