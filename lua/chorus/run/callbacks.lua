-- chorus.run.callbacks: webhook delivery. An execution's webhooks are its
-- config's settings.callback_url and the callback_url its execute request
-- carried (M.urls). With PostgreSQL, when it ends a row per URL in
-- orchestration_callbacks is written in the same transaction as its
-- terminal status (the outbox, see chorus.store.pg), and any node delivers
-- those rows (deliverer): due rows are claimed with FOR UPDATE SKIP LOCKED
-- and leased for the attempt, so a node dying mid-delivery only delays it.
-- In memory, the process delivers them itself as the execution ends
-- (local_deliverer). Either way: POST the JSON payload, retry with
-- exponential backoff and jitter until a 2xx or max_attempts.
--
-- Destinations: a URL whose host resolves to a loopback, private or
-- link-local address is refused (SSRF: a user must not make the server
-- call its own network), checked on the address actually connected to,
-- unless CHORUS_WEBHOOK_ALLOW lists it: comma-separated host names,
-- addresses or CIDR ranges ("hooks.internal,10.1.0.0/16,127.0.0.1"), or
-- "*" for any.
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
local rfc3339 = require "chorus.rfc3339"
local log = require "chorus.log"
local client = require "chorus.http.client"

local M = {}

M.defaults = { max_attempts = 8, base_backoff_ms = 1000, max_backoff_ms = 3600000,
  timeout_ms = 10000, poll_ms = 500, batch = 50, lease_ms = 60000 }

-- sign(secret, timestamp, body) -> "sha256=HEX"
function M.sign(secret, ts, body)
  return "sha256=" .. native.hmac_sha256(secret, tostring(ts) .. "." .. body)
end

-- policy(allow) -> {any = bool, hosts = {[name] = true}, cidrs = {...}}
-- from CHORUS_WEBHOOK_ALLOW's syntax.
function M.policy(allow)
  local p = { any = false, hosts = {}, cidrs = {} }
  for item in (allow or ""):gmatch("[^,%s]+") do
    if item == "*" then
      p.any = true
    elseif native.is_cidr(item) then
      p.cidrs[#p.cidrs + 1] = item
    else
      p.hosts[item:lower()] = true
    end
  end
  return p
end

local env_policy
local function current_policy()
  env_policy = env_policy or M.policy(os.getenv("CHORUS_WEBHOOK_ALLOW"))
  return env_policy
end

-- host_of(url) -> lower-case host (brackets of an IPv6 literal removed)
local function host_of(url)
  local authority = url:match("^%a[%w+.%-]*://([^/?#]+)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", "")
  local v6 = authority:match("^%[([^%]]+)%]")
  if v6 then return v6:lower() end
  return (authority:gsub(":%d*$", "")):lower()
end

-- check_url(url [, policy]) -> true | nil, why: what can be told before
-- any request: an http(s) URL with a host, and not a literal internal
-- address the policy does not allow (names are checked when connecting).
function M.check_url(url, policy)
  policy = policy or current_policy()
  if type(url) ~= "string" or not url:match("^[hH][tT][tT][pP][sS]?://") then
    return nil, "must be an http:// or https:// URL"
  end
  local ok, err = client.check_url(url)
  if not ok then return nil, err end
  local host = host_of(url)
  if not host or host == "" then return nil, "has no host" end
  if policy.any or policy.hosts[host] then return true end
  if host == "localhost" or host:match("%.localhost$") then
    return nil, ("%s is this server's own network; allow it with CHORUS_WEBHOOK_ALLOW"):format(host)
  end
  if native.is_internal_address(host) then
    local allowed = false
    for _, c in ipairs(policy.cidrs) do
      if native.address_in(host, c) then allowed = true break end
    end
    if not allowed then
      return nil, ("%s is an internal address; allow it with CHORUS_WEBHOOK_ALLOW"):format(host)
    end
  end
  return true
end

-- urls(exec) -> the distinct webhook URLs of an execution
function M.urls(exec)
  local a = exec.config.settings.callback_url
  local b = exec.callback_url
  if a and b and a ~= b then return { a, b } end
  if a or b then return { a or b } end
  return nil
end

-- payload(exec) -> the body a webhook receives when an execution ends
-- (its time in the API's form, RFC 3339)
function M.payload(exec)
  return { event = "execution." .. exec.status, execution_id = exec.id, trace_id = exec.trace_id,
    config = exec.config.name, status = exec.status, output = exec.output, error = exec.error,
    finished_at = exec.finished_at and rfc3339.format(exec.finished_at), session_id = exec.session_id,
    metrics = { latency_ms = exec.latency_ms, tokens = exec.tokens, cost = exec.cost } }
end

-- post(url, payload, {id, secret, timeout_ms, policy}) -> status
--   | nil, err, http_status, final
-- The connection is refused when the URL's host resolves to an internal
-- address the policy does not allow (checked by curl's socket opener).
-- final: a refusal by the policy, which another attempt would meet again
-- (both deliverers give up at once).
function M.post(url, payload, opts)
  local policy = opts.policy or current_policy()
  local ok, why = M.check_url(url, policy)
  if not ok then return nil, "refused: " .. url .. " " .. why, nil, true end
  local host = host_of(url)
  local body = json.encode(payload)
  local ts = math.floor(native.time())
  local headers = {
    ["content-type"] = "application/json", ["x-chorus-event"] = payload.event,
    ["x-chorus-delivery"] = tostring(opts.id), ["x-chorus-timestamp"] = tostring(ts),
    ["user-agent"] = "chorus/" .. native.version,
  }
  if opts.secret then headers["x-chorus-signature"] = M.sign(opts.secret, ts, body) end
  local guard = not (policy.any or policy.hosts[host])
  local res, err, kind = client.request({ method = "POST", url = url, headers = headers, body = body,
    timeout_ms = opts.timeout_ms or M.defaults.timeout_ms, max_body_bytes = 65536,
    deny_internal = guard, allow = guard and policy.cidrs or nil })
  if not res then return nil, err, nil, kind == "blocked address" end
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
  o.policy = opts and opts.policy -- (default: CHORUS_WEBHOOK_ALLOW)
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
  local status, err, code, final = M.post(row.url, row.payload, { id = row.id, secret = o.secret,
    timeout_ms = o.timeout_ms, policy = o.policy })
  if status then
    self.stats.delivered = self.stats.delivered + 1
    return self.pool:query([[UPDATE orchestration_callbacks SET status = 'delivered', delivered_at = now(),
      last_status_code = $2, last_error = NULL WHERE id = $1]], row.id, status)
  end
  if final or row.attempts >= o.max_attempts then
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

-- In memory: the process delivers its executions' webhooks itself, with
-- the same retries, in a detached task per webhook. What is still being
-- retried when the process stops is logged as undelivered (memory mode
-- keeps nothing across a restart).
local Local = {}
Local.__index = Local

-- local_deliverer({secret, max_attempts, ...}) -> d; d:enqueue(exec);
-- d:wait(ms); d:stop()
function M.local_deliverer(opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = (opts and opts[k] ~= nil) and opts[k] or v end
  o.secret = opts and opts.secret
  o.policy = opts and opts.policy
  return setmetatable({ opts = o, active = {}, nactive = 0, idle = sched.cond(),
    stats = { delivered = 0, failed = 0, retried = 0 } }, Local)
end

local function deliver_local(self, url, payload, id)
  local o = self.opts
  for attempt = 1, o.max_attempts do
    local status, err, _, final = M.post(url, payload, { id = id, secret = o.secret, timeout_ms = o.timeout_ms,
      policy = o.policy })
    if status then
      self.stats.delivered = self.stats.delivered + 1
      return
    end
    if attempt == o.max_attempts or final then
      self.stats.failed = self.stats.failed + 1
      log.warn_with({ trace_id = payload.trace_id, execution_id = payload.execution_id },
        "callbacks: giving up on %s for execution %s after %d attempts: %s", url, payload.execution_id, attempt,
        tostring(err))
      return
    end
    self.stats.retried = self.stats.retried + 1
    log.info_with({ trace_id = payload.trace_id, execution_id = payload.execution_id },
      "callbacks: %s for execution %s failed (%s); retrying", url, payload.execution_id, tostring(err))
    if not sched.sleep(M.backoff_ms(attempt, o)) then return end
  end
end

-- The closure is made in a function of its own: enqueue runs at the end
-- of every execution and returns early when it has no webhook, and a
-- function that makes a closure and returns early cannot be compiled
-- (LuaJIT: NYI UCLO).
local function spawn_delivery(self, url, payload, id)
  local t
  t = sched.spawn_with({ detached = true }, function()
    deliver_local(self, url, payload, id)
    self.active[t] = nil
    self.nactive = self.nactive - 1
    if self.nactive == 0 then self.idle:signal(true) end
  end)
  self.active[t] = url
  self.nactive = self.nactive + 1
end

function Local:enqueue(exec)
  local urls = M.urls(exec)
  if not urls then return end
  local payload = M.payload(exec)
  for i, url in ipairs(urls) do spawn_delivery(self, url, payload, exec.id .. "/" .. i) end
end

-- wait(ms) -> true once nothing is being delivered (false after ms)
function Local:wait(ms)
  local waker = sched.spawn(function() sched.sleep(ms) self.idle:signal(false) end)
  while self.nactive > 0 do
    if not self.idle:wait() then break end
    if waker:done() then break end
  end
  waker:cancel()
  return self.nactive == 0
end

function Local:stop()
  for t, url in pairs(self.active) do
    log.warn("callbacks: %s not delivered: the process is stopping", url)
    t:cancel()
  end
  self.active, self.nactive = {}, 0
end

return M
