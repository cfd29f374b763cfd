-- chorus.store.memory_stats: the memory store's side of GET
-- /api/v1/stats. Ended executions leave the Lua heap (memory.lua's
-- archive), so their numbers are kept as they end, in per-minute
-- aggregates for the last 24 hours: bounded by time and by the number of
-- tenants, users, configs and agents, not by throughput. Executions still
-- running (and their finished steps) are counted from the live objects
-- when asked. Nothing runs per step: an execution's steps are recorded
-- with it, once (a hook per step cost the engine ~5 % of its throughput).
--
--   minutes[minute][tenant][user] = {
--     ex = { [status] = { [config] = {n, tokens, cost} } },   by creation minute
--     st = { [agent] = { [bucket + KEY] = {n, sum_ms} } },    by step end minute
--   }
-- Tenant and user nil are stored under "". Nested tables rather than
-- concatenated keys: recording allocates nothing once its cells exist.
local stats = require "chorus.store.stats"
local native = require "chorus.native"

local floor = math.floor
local NONE = {}
-- Buckets are integers, negative below 1 ms: as keys, some would land in
-- a table's array part and some in its hash part, a mix LuaJIT does not
-- compile (NYI: mixed sparse/dense table), and recording an execution's
-- steps ran in the interpreter. Keyed half a unit off, none is an
-- integer.
local KEY = 0.5

local M = {}

local Stats = {}
Stats.__index = Stats

function M.new()
  return setmetatable({ minutes = {}, pruned = 0 }, Stats)
end

-- cell(self, minute, tenant, user) -> the aggregate of that minute and
-- scope, or nil when the minute is older than any window.
local function cell(self, at, tenant, user)
  local minute = floor(at / 60) * 60
  local m = self.minutes[minute]
  if not m then
    local now = native.time()
    if minute < now - stats.MAX_WINDOW_S - 60 then return nil end
    m = {}
    self.minutes[minute] = m
    -- A new minute: drop those no window can reach any more.
    if now - self.pruned >= 60 then
      self.pruned = now
      for k in pairs(self.minutes) do
        if k < now - stats.MAX_WINDOW_S - 60 then self.minutes[k] = nil end
      end
    end
  end
  local t = m[tenant or ""]
  if not t then t = {}; m[tenant or ""] = t end
  local u = t[user or ""]
  if not u then u = { ex = {}, st = {} }; t[user or ""] = u end
  return u
end

-- A step run that counts for latency: it ended, with a latency.
local function timed(sr)
  local st = sr.status
  return (st == "completed" or st == "failed") and sr.latency_ms ~= nil and sr.finished_at ~= nil
end

-- ended(exec): an execution reached its terminal status: it and its
-- finished steps (each by the minute it ended) are added.
function Stats:ended(e)
  local tenant, user = e.tenant_id, e.user_id
  local u = cell(self, e.created_at, tenant, user)
  if u then
    local by = u.ex[e.status]
    if not by then by = {}; u.ex[e.status] = by end
    local c = by[e.config_name]
    if not c then c = { 0, 0, 0 }; by[e.config_name] = c end
    c[1], c[2], c[3] = c[1] + 1, c[2] + (e.tokens or 0), c[3] + (e.cost or 0)
  end
  local minute, su
  for _, sr in ipairs(e.steps or NONE) do
    if timed(sr) then
      local m = floor(sr.finished_at / 60)
      if m ~= minute then minute, su = m, cell(self, sr.finished_at, tenant, user) end
      if su then
        local agent = e:step_of(sr.id).agent
        local a = su.st[agent]
        if not a then a = {}; su.st[agent] = a end
        local b = stats.bucket(sr.latency_ms) + KEY
        local h = a[b]
        if not h then h = { 0, 0 }; a[b] = h end
        h[1], h[2] = h[1] + 1, h[2] + sr.latency_ms
      end
    end
  end
end

-- query(live, filter) -> stats result. live: the store's execution
-- objects by id (those not yet ended are counted from there).
-- filter: {window_s, tenant_id, user_id} (nil: every tenant/user).
function Stats:query(live, filter)
  local now = native.time()
  local window = filter.window_s or 3600
  local since = stats.window_start(now, window)
  local acc = stats.acc(since, floor(now / 60) * 60 + 60, window)
  local ft, fu = filter.tenant_id, filter.user_id
  for minute, m in pairs(self.minutes) do
    if minute >= since then
      for tenant, t in pairs(m) do
        if ft == nil or tenant == ft then
          for user, u in pairs(t) do
            if fu == nil or user == fu then
              for status, by in pairs(u.ex) do
                for config, c in pairs(by) do acc:executions(minute, status, config, c[1], c[2], c[3]) end
              end
              for agent, a in pairs(u.st) do
                for b, h in pairs(a) do acc:steps(agent, b - KEY, h[1], h[2]) end
              end
            end
          end
        end
      end
    end
  end
  for _, e in pairs(live) do
    if not e._stored_final and (ft == nil or e.tenant_id == ft) and (fu == nil or e.user_id == fu) then
      if e.created_at >= since then
        acc:executions(floor(e.created_at / 60) * 60, e.status, e.config_name, 1, e.tokens, e.cost)
      end
      for _, sr in ipairs(e.steps or NONE) do
        if timed(sr) and sr.finished_at >= since then
          acc:steps(e:step_of(sr.id).agent, stats.bucket(sr.latency_ms), 1, sr.latency_ms)
        end
      end
    end
  end
  return acc:result()
end

return M
