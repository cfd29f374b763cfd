-- chorus.callbacks: webhook delivery. When an execution with
-- settings.callback_url ends, a row in orchestration_callbacks is written
-- in the same transaction as its terminal status (the outbox, see
-- chorus.store.pg); this module delivers those rows: POST the JSON payload,
-- retry with exponential backoff and jitter until a 2xx or max_attempts.
-- Any node may deliver: due rows are claimed with FOR UPDATE SKIP LOCKED
-- and leased for the attempt, so a node dying mid-delivery only delays it.
--
-- Each request carries:
--   content-type: application/json
--   x-chorus-event: execution.completed | execution.failed | execution.cancelled
--   x-chorus-delivery: the callback id (the same on every retry)
--   x-chorus-timestamp: unix seconds of this attempt
--   x-chorus-signature: sha256=HEX, HMAC-SHA256 of "<timestamp>.<body>"
--                       with the callback secret (when one is configured)
-- A receiver verifies the signature and rejects old timestamps (replays).
local sched = require "chorus.sched"
local native = require "chorus.native"
local json = require "chorus.json"
local log = require "chorus.log"
local client = require "chorus.http.client"

local M = {}

M.defaults = { max_attempts = 8, base_backoff_ms = 1000, max_backoff_ms = 3600000,
  timeout_ms = 10000, poll_ms = 500, batch = 50, lease_ms = 60000 }

-- sign(secret, timestamp, body) -> "sha256=HEX"
function M.sign(secret, ts, body)
  return "sha256=" .. native.hmac_sha256(secret, tostring(ts) .. "." .. body)
end

-- post(url, payload, {id, secret, timeout_ms}) -> status | nil, err
function M.post(url, payload, opts)
  local body = json.encode(payload)
  local ts = math.floor(native.time())
  local headers = {
    ["content-type"] = "application/json", ["x-chorus-event"] = payload.event,
    ["x-chorus-delivery"] = tostring(opts.id), ["x-chorus-timestamp"] = tostring(ts),
    ["user-agent"] = "chorus/" .. native.version,
  }
  if opts.secret then headers["x-chorus-signature"] = M.sign(opts.secret, ts, body) end
  local res, err = client.request({ method = "POST", url = url, headers = headers, body = body,
    timeout_ms = opts.timeout_ms or M.defaults.timeout_ms, max_body_bytes = 65536 })
  if not res then return nil, err end
  if res.status < 200 or res.status > 299 then
    return nil, ("HTTP %d"):format(res.status), res.status
  end
  return res.status
end

-- backoff_ms(attempts): the wait after the n-th failed attempt
function M.backoff_ms(n, opts)
  opts = opts or M.defaults
  local ms = math.min(opts.max_backoff_ms, opts.base_backoff_ms * 2 ^ (n - 1))
  return ms * (0.5 + 0.5 * math.random())
end

local Deliverer = {}
Deliverer.__index = Deliverer

-- deliverer(pool, {secret, max_attempts, ...}) -> d; d:run(); d:stop()
function M.deliverer(pool, opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = (opts and opts[k] ~= nil) and opts[k] or v end
  o.secret = opts and opts.secret
  if not o.secret then
    log.warn("callbacks: no callback secret configured (CHORUS_CALLBACK_SECRET): webhooks are sent unsigned")
  end
  return setmetatable({ pool = pool, opts = o, stopping = false,
    stats = { delivered = 0, failed = 0, retried = 0 } }, Deliverer)
end

local CLAIM = [[
UPDATE orchestration_callbacks c SET attempts = c.attempts + 1,
  next_attempt_at = now() + $2::float8 * interval '1 millisecond'
FROM (SELECT id FROM orchestration_callbacks WHERE status = 'pending' AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) d
WHERE c.id = d.id
RETURNING c.id, c.url, c.payload, c.attempts]]

function Deliverer:deliver(row)
  local o = self.opts
  local status, err, code = M.post(row.url, row.payload, { id = row.id, secret = o.secret, timeout_ms = o.timeout_ms })
  if status then
    self.stats.delivered = self.stats.delivered + 1
    return self.pool:query([[UPDATE orchestration_callbacks SET status = 'delivered', delivered_at = now(),
      last_status_code = $2, last_error = NULL WHERE id = $1]], row.id, status)
  end
  if row.attempts >= o.max_attempts then
    self.stats.failed = self.stats.failed + 1
    log.warn("callbacks: giving up on %s after %d attempts: %s", row.url, row.attempts, tostring(err))
    return self.pool:query([[UPDATE orchestration_callbacks SET status = 'failed', last_error = $2,
      last_status_code = $3 WHERE id = $1]], row.id, err, code)
  end
  self.stats.retried = self.stats.retried + 1
  return self.pool:query([[UPDATE orchestration_callbacks SET last_error = $2, last_status_code = $3,
    next_attempt_at = now() + $4::float8 * interval '1 millisecond' WHERE id = $1]],
    row.id, err, code, M.backoff_ms(row.attempts, o))
end

-- once() -> number of callbacks attempted | nil, err
function Deliverer:once()
  local res, err = self.pool:query(CLAIM, self.opts.batch, self.opts.lease_ms)
  if not res then return nil, err end
  local tasks = {}
  for i, row in ipairs(res.rows) do tasks[i] = sched.spawn(self.deliver, self, row) end
  if #tasks > 0 then sched.wait_all(tasks) end
  return #res.rows
end

function Deliverer:run()
  self.task = sched.spawn_with({ detached = true }, function()
    while not self.stopping do
      local n, err = self:once()
      if not n then log.warn("callbacks: %s", tostring(err)) end
      if (n or 0) == 0 and not sched.sleep(self.opts.poll_ms) then return end
    end
  end)
  return self
end

function Deliverer:stop()
  self.stopping = true
  if self.task then self.task:cancel() end
end

return M
