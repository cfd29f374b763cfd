-- chorus.run.cluster: what the nodes of a cluster share through Redis besides
-- events — the step result cache (chorus.engine.step_cache) and rate limits
-- (chorus.engine.rate_limit). One connection per process, opened on first use
-- from the URL the server or worker was given (configure); without one,
-- or while Redis is down, each feature falls back to this process alone
-- (and says so in its stats), never failing a step.
local redis = require "chorus.db.redis"
local log = require "chorus.log"

local M = { url = nil, conn = nil, tried_at = nil }

-- A lost Redis is tried again at most this often (ms).
local RETRY_MS = 5000

-- configure({redis_url = url | nil}): the process's Redis (nil: none).
function M.configure(opts)
  local url = opts and opts.redis_url
  if url == M.url then return end
  if M.conn then M.conn:close() end
  M.url, M.conn, M.tried_at = url, nil, nil
end

-- client() -> a connected client | nil (no Redis, or not reachable now).
function M.client()
  if not M.url then return nil end
  local c = M.conn
  if c then
    if c:connected() then return c end
    return nil -- it reconnects by itself
  end
  local now = require("chorus.sched").now()
  if M.tried_at and now - M.tried_at < RETRY_MS then return nil end
  M.tried_at = now
  local conn, err = redis.connect(M.url, { command_timeout_ms = 500 })
  if not conn then
    log.warn("cluster: Redis not reachable (%s); the step cache and rate limits are this process's own for now",
      tostring(err))
    return nil
  end
  M.conn = conn
  return conn
end

return M
