-- chorus.engine.rate_limit: token buckets that bound how often an agent is
-- called — across every node through Redis (one server-side script, the
-- bucket's state in a hash, Redis's own clock), or in this process alone
-- without Redis (or while it is down).
--
-- A limit is {per_second = r, burst = b}: at most b calls at once, then r
-- a second. A caller takes a token now or reserves the next one and waits
-- for it (the bucket goes below zero: callers queue in order and never
-- exceed the rate together).
--
--   acquire(name, limit) -> waited_ms | nil, why   (why: "timeout",
--     "cancelled" — the wait counts against the caller's deadline)
--   check(limit) -> true | nil, err
local sched = require "chorus.sched"
local native = require "chorus.native"
local cluster = require "chorus.run.cluster"

local M = { stats = { waits = 0, waited_ms = 0, local_fallbacks = 0 } }

local PREFIX = "chorus:rate:"

-- KEYS[1] the bucket; ARGV rate (per second), burst. Returns the wait in
-- ms before the reserved token is due.
local SCRIPT = [[
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens + 1) * 1000 / rate) + 1000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000 / rate)
]]
local sha

function M.check(limit)
  if type(limit) ~= "table" then return nil, "a rate limit is {per_second, burst}" end
  local r, b = limit.per_second, limit.burst or 1
  if type(r) ~= "number" or r <= 0 or r > 1e6 then return nil, "per_second must be a number in (0, 1000000]" end
  if type(b) ~= "number" or b < 1 or b > 1e6 or b % 1 ~= 0 then return nil, "burst must be an integer in [1, 1000000]" end
  return true
end

local buckets = {}

local function local_reserve(name, r, b)
  local now = native.now()
  local s = buckets[name]
  if not s then
    s = { tokens = b, ts = now }
    buckets[name] = s
  end
  s.tokens = math.min(b, s.tokens + (now - s.ts) * r / 1000) - 1
  s.ts = now
  if s.tokens >= 0 then return 0 end
  return math.ceil(-s.tokens * 1000 / r)
end

local function redis_reserve(c, name, r, b)
  local key = PREFIX .. name
  if sha then
    local w, err = c:call("EVALSHA", sha, "1", key, tostring(r), tostring(b))
    if w ~= nil then return tonumber(w) end
    if not tostring(err):match("NOSCRIPT") then return nil, err end
  end
  local loaded, lerr = c:call("SCRIPT", "LOAD", SCRIPT)
  if not loaded then return nil, lerr end
  sha = loaded
  local w, err = c:call("EVALSHA", sha, "1", key, tostring(r), tostring(b))
  if w == nil then return nil, err end
  return tonumber(w)
end

function M.acquire(name, limit)
  local r, b = limit.per_second, limit.burst or 1
  local wait
  local c = cluster.client()
  if c then
    local err
    wait, err = redis_reserve(c, name, r, b)
    if not wait then
      require("chorus.log").warn("rate limit %s: Redis failed (%s); limiting in this process", name, tostring(err))
    end
  end
  if not wait then
    if c or cluster.url then M.stats.local_fallbacks = M.stats.local_fallbacks + 1 end
    wait = local_reserve(name, r, b)
  end
  if wait <= 0 then return 0 end
  M.stats.waits = M.stats.waits + 1
  M.stats.waited_ms = M.stats.waited_ms + wait
  local ok, why = sched.sleep(wait)
  if not ok then return nil, why end
  return wait
end

-- reset(): forget the in-process buckets (specs).
function M.reset()
  buckets = {}
  sha = nil
end

return M
