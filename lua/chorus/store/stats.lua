-- chorus.store.stats: the numbers behind GET /api/v1/stats (the admin page's
-- overview), computed the same way by both stores from their own data.
--
-- A window starts on a whole minute (window_start), so the memory store,
-- which keeps per-minute aggregates, and PostgreSQL, which groups rows,
-- count exactly the same executions. Step latency percentiles come from a
-- log-scale histogram (8 buckets per doubling: a bucket's middle is within
-- 4.5 % of any latency in it); PostgreSQL computes the same bucket number
-- in SQL (BUCKET_SQL), so both stores answer the same p50/p99 for the same
-- latencies.
--
-- The result (stats.result):
--   { since, until, window_s,
--     executions = { total, by_status = {status = n} },
--     per_minute = [{at, by_status = {status = n}}],      oldest first
--     step_latency = [{agent, count, avg_ms, p50_ms, p99_ms}], by agent
--     usage_by_config = [{config, executions, tokens, cost}] } by tokens desc
local json = require "chorus.json"

local floor, log, max, exp = math.floor, math.log, math.max, math.exp

local M = {}

M.PER_DOUBLING = 8
M.MAX_WINDOW_S = 86400
local LOG2 = log(2)

-- bucket(ms) -> the histogram bucket of a latency
function M.bucket(ms)
  return floor(log(max(ms, 0.001)) / LOG2 * M.PER_DOUBLING)
end

-- The same, in SQL over a column expression.
function M.bucket_sql(col)
  return ("floor(ln(greatest(%s, 0.001)) / ln(2) * %d)::int"):format(col, M.PER_DOUBLING)
end

-- value(b) -> the latency a bucket stands for (its geometric middle)
function M.value(b)
  return exp((b + 0.5) / M.PER_DOUBLING * LOG2)
end

-- window_start(now, window_s) -> the first second of the window
function M.window_start(now, window_s)
  return floor((now - window_s) / 60) * 60
end

-- quantile(hist, count, q) -> ms: hist = {bucket = n}
function M.quantile(hist, count, q)
  if count == 0 then return nil end
  local keys = {}
  for b in pairs(hist) do keys[#keys + 1] = b end
  table.sort(keys)
  local rank = math.ceil(q * count)
  if rank < 1 then rank = 1 end
  local seen = 0
  for _, b in ipairs(keys) do
    seen = seen + hist[b]
    if seen >= rank then return M.value(b) end
  end
  return M.value(keys[#keys])
end

local function round(x, places)
  local m = 10 ^ (places or 3)
  return floor(x * m + 0.5) / m
end

-- (Empty tables encode as {}, which is what an empty by_status is.)

-- An accumulator both stores feed, then result() shapes.
local Acc = {}
Acc.__index = Acc

function M.acc(since, until_, window_s)
  return setmetatable({ since = since, until_ = until_, window_s = window_s,
    by_status = {}, minutes = {}, agents = {}, configs = {}, total = 0 }, Acc)
end

-- executions(minute, status, config, n, tokens, cost): n executions
-- created in that minute, now in that status.
function Acc:executions(minute, status, config, n, tokens, cost)
  self.total = self.total + n
  self.by_status[status] = (self.by_status[status] or 0) + n
  local m = self.minutes[minute]
  if not m then m = {}; self.minutes[minute] = m end
  m[status] = (m[status] or 0) + n
  local c = self.configs[config]
  if not c then c = { config = config, executions = 0, tokens = 0, cost = 0 }; self.configs[config] = c end
  c.executions = c.executions + n
  c.tokens = c.tokens + (tokens or 0)
  c.cost = c.cost + (cost or 0)
end

-- steps(agent, bucket, n, sum_ms): n finished steps of that agent whose
-- latency fell in the bucket, sum_ms their total latency.
function Acc:steps(agent, bucket, n, sum_ms)
  local a = self.agents[agent]
  if not a then a = { count = 0, sum = 0, hist = {} }; self.agents[agent] = a end
  a.count = a.count + n
  a.sum = a.sum + sum_ms
  a.hist[bucket] = (a.hist[bucket] or 0) + n
end

function Acc:result()
  local per_minute = json.array()
  local first = self.since
  for at = first, self.until_ - 1, 60 do
    local m = self.minutes[at]
    local by = {}
    if m then for st, n in pairs(m) do by[st] = n end end
    per_minute[#per_minute + 1] = { at = at, by_status = by }
  end
  local latency = json.array()
  for agent, a in pairs(self.agents) do
    latency[#latency + 1] = { agent = agent, count = a.count, avg_ms = round(a.sum / a.count),
      p50_ms = round(M.quantile(a.hist, a.count, 0.5)), p99_ms = round(M.quantile(a.hist, a.count, 0.99)) }
  end
  table.sort(latency, function(x, y) return x.agent < y.agent end)
  local usage = json.array()
  for _, c in pairs(self.configs) do
    c.cost = round(c.cost, 6)
    usage[#usage + 1] = c
  end
  table.sort(usage, function(x, y)
    if x.tokens ~= y.tokens then return x.tokens > y.tokens end
    return x.config < y.config
  end)
  local by_status = {}
  for st, n in pairs(self.by_status) do by_status[st] = n end
  return {
    since = self.since, ["until"] = self.until_, window_s = self.window_s,
    executions = { total = self.total, by_status = by_status },
    per_minute = per_minute, step_latency = latency, usage_by_config = usage,
  }
end

return M
