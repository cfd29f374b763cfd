-- chorus.api.present: records as the API gives them, whichever store
-- they come from. Every response that carries a config, an execution, a
-- step, the stats or an event goes through here, so that
--   * every field is always there (null when unknown), with one type:
--     a client sees the same keys from the memory and the PostgreSQL
--     store, running or ended, archived or not;
--   * times are RFC 3339 strings in UTC with milliseconds (chorus.rfc3339):
--     the engine and the stores keep epoch seconds, converted once, here;
--   * metadata is an object ({} when none), booleans are booleans.
-- The field lists below are the contract; chorus.api.openapi documents
-- the same ones (its spec checks every response against them).
local json = require "chorus.json"
local rfc3339 = require "chorus.rfc3339"
local new_tab = require "table.new"

local null, type, pairs, ipairs, next = json.null, type, pairs, ipairs, next

local M = {}

-- time(t) -> RFC 3339 | json.null
local function time(t)
  if type(t) == "number" then return rfc3339.format(t) end
  if type(t) == "string" then return t end -- already given its form
  return null
end
M.time = time

local function opt(v)
  if v == nil then return null end
  return v
end

-- An object: none, an empty table (of either kind) or json.null is {}.
local function object(v)
  if type(v) ~= "table" or next(v) == nil then return {} end
  return v
end

local function steps_count(doc)
  local list = type(doc) == "table" and doc.steps
  return type(list) == "table" and #list or 0
end

-- config(c) -> the API's config
function M.config(c)
  return {
    id = c.id, name = c.name, description = opt(c.description), strategy = c.strategy,
    steps = c.steps, steps_count = steps_count(c.steps), metadata = object(c.metadata),
    tenant_id = opt(c.tenant_id), owner_id = opt(c.owner_id), updated_by = opt(c.updated_by),
    is_global = c.tenant_id == nil, is_active = c.is_active == true, version = c.version,
    created_at = time(c.created_at), updated_at = time(c.updated_at),
  }
end

-- config_version(v) -> an earlier version of a config
function M.config_version(v)
  return {
    id = v.id, version = v.version, name = v.name, description = opt(v.description), strategy = v.strategy,
    steps = v.steps, steps_count = steps_count(v.steps), metadata = object(v.metadata),
    created_at = time(v.created_at), created_by = opt(v.created_by),
  }
end

local function metrics(m)
  m = m or {}
  return { latency_ms = opt(m.latency_ms), tokens = m.tokens or 0, cost = m.cost or 0 }
end

-- Executions and their steps are given their API form in place: a
-- record or summary is the store's fresh answer (built for this read,
-- its tables the caller's) with no field outside the contract (the
-- stores build the same fields, chorus.store.memory), and a copy of each
-- step would double a status read's garbage. Only the record's own
-- tables change, never the inputs and outputs they hold (shared with
-- the execution). Applying it twice gives the same record.

-- summary(r) -> r, an execution in a list
function M.summary(r)
  r.config_id, r.config_version, r.strategy = opt(r.config_id), opt(r.config_version), opt(r.strategy)
  r.error, r.user_id, r.tenant_id, r.session_id = opt(r.error), opt(r.user_id), opt(r.tenant_id), opt(r.session_id)
  r.metadata, r.metrics = object(r.metadata), metrics(r.metrics)
  r.created_at, r.started_at = time(r.created_at), time(r.started_at)
  r.paused_at, r.finished_at = time(r.paused_at), time(r.finished_at)
  return r
end

local function step_in_place(s)
  s.name, s.agent_version = opt(s.name), opt(s.agent_version)
  s.attempts, s.latency_ms, s.error, s.reason = s.attempts or 0, opt(s.latency_ms), opt(s.error), opt(s.reason)
  s.input, s.output, s.output_truncated = opt(s.input), opt(s.output), s.output_truncated == true
  s.tokens, s.cost, s.answered_by, s.approval = s.tokens or 0, s.cost or 0, opt(s.answered_by), opt(s.approval)
  s.compensation, s.cached, s.cached_from = opt(s.compensation), s.cached == true, opt(s.cached_from)
  s.rate_wait_ms, s.dynamic, s.parent = opt(s.rate_wait_ms), s.dynamic == true, opt(s.parent)
  s.item_index, s.started_at, s.finished_at = opt(s.item_index), time(s.started_at), time(s.finished_at)
end

-- execution(r) -> r, an execution record with every step
function M.execution(r)
  M.summary(r)
  r.strategy_version = opt(r.strategy_version)
  r.input, r.output = object(r.input), opt(r.output)
  r.answered_by, r.consensus = opt(r.answered_by), opt(r.consensus)
  r.node_id, r.claims = opt(r.node_id), r.claims or 0
  local steps = r.steps
  if type(steps) ~= "table" then
    steps = json.array()
    r.steps = steps
  elseif next(steps) == nil then
    r.steps = json.array() -- [] even when the store gave an unmarked {}
  end
  for _, s in ipairs(steps) do step_in_place(s) end
  return r
end

-- list(items, fn) -> the items in their API form (an array, [] when none)
function M.list(items, fn)
  local out = json.array()
  for i, x in ipairs(items) do out[i] = fn(x) end
  return out
end

-- stats(st) -> the overview numbers with their times (st is the store's
-- fresh answer: changed in place)
function M.stats(st)
  st.since, st["until"] = time(st.since), time(st["until"])
  for _, p in ipairs(st.per_minute or {}) do p.at = time(p.at) end
  return st
end

-- event(e) -> a copy of an engine event with its time ("at") in the API's
-- form. The engine's event is shared (history, the Redis bridge, other
-- subscribers): it is not changed.
function M.event(e)
  local out = new_tab(0, 16) -- an event's size (Execution:event): no rehash
  for k, v in pairs(e) do out[k] = v end
  if e.at ~= nil then out.at = time(e.at) end
  return out
end

-- The fields of each shape (for the OpenAPI document and the specs).
M.FIELDS = {
  Config = { "id", "name", "description", "strategy", "steps", "steps_count", "metadata", "tenant_id", "owner_id",
    "updated_by", "is_global", "is_active", "version", "created_at", "updated_at" },
  ConfigVersion = { "id", "version", "name", "description", "strategy", "steps", "steps_count", "metadata",
    "created_at", "created_by" },
  ExecutionSummary = { "id", "trace_id", "config", "config_id", "config_version", "strategy", "status", "error",
    "user_id", "tenant_id", "session_id", "metadata", "created_at", "started_at", "paused_at", "finished_at",
    "metrics" },
  ExecutionExtra = { "strategy_version", "input", "output", "answered_by", "consensus", "node_id", "claims", "steps" },
  StepRun = { "id", "name", "agent", "agent_version", "status", "attempts", "latency_ms", "error", "reason", "input",
    "output", "output_truncated", "tokens", "cost", "answered_by", "approval", "compensation", "cached",
    "cached_from", "rate_wait_ms", "dynamic", "parent", "item_index", "started_at", "finished_at" },
}

return M
