-- chorus.log.events: what an engine does, as log records, from its event
-- bus and its registry, so the engine itself carries no logging code:
--
--   info   execution started            trace_id, execution_id, config
--   info   execution completed|failed|cancelled
--                                       + status, error, latency_ms
--   debug  execution paused|running     + status, previous
--   debug  step <status>, step retry, step awaits approval, step compensated
--                                       + step_id, agent, attempt, status,
--                                       error, latency_ms
--   info   registry reloaded            generation, strategies, agents,
--                                       aggregators, errors (warn when
--                                       some scripts failed to load)
--
-- A resumed execution (another node died) is recorded by chorus.run.node
-- ("node: resuming execution"): its status does not change then.
--
--   attach(engine) -> detach(): the level is read now; at info, step
--   events cost one type test each; at warn, only reload errors are
--   recorded, and the bus has no subscriber of ours.
local log = require "chorus.log"

local floor = math.floor

local M = {}

local TERMINAL = require("chorus.engine.states").execution_terminal

local function ms(v)
  return v and floor(v * 1000 + 0.5) / 1000 or nil
end

-- "execution <status>" for each terminal status, made once.
local ENDED = {}
for status in pairs(TERMINAL) do ENDED[status] = "execution " .. status end

local function execution_event(e)
  local to = e.status
  if TERMINAL[to] then
    -- A start and an end per execution: fields as arguments (log.line).
    log.line(2, ENDED[to], "trace_id", e.trace_id, "execution_id", e.execution_id, "config", e.config,
      "status", to, "latency_ms", ms(e.latency_ms), "error", e.error)
  elseif to == "running" and e.previous == "pending" then
    log.line(2, "execution started", "trace_id", e.trace_id, "execution_id", e.execution_id, "config", e.config)
  elseif log.level <= 1 then
    log.debug_with({ "trace_id", e.trace_id, "execution_id", e.execution_id, "config", e.config, "status", to,
      "previous", e.previous }, "execution %s", to)
  end
end

local STEP_MSG = { ["step.retry"] = "step retry", ["step.approval"] = "step awaits approval",
  ["step.compensated"] = "step compensated" }

local function step_event(e, t)
  log.debug_with({ "trace_id", e.trace_id, "execution_id", e.execution_id, "step_id", e.step_id, "agent", e.agent,
    "attempt", e.attempts or e.attempt, "status", e.status, "latency_ms", ms(e.latency_ms), "error", e.error },
    t == "step.status" and ("step " .. tostring(e.status)) or STEP_MSG[t])
end

local function count(t)
  local n = 0
  for _ in pairs(t or {}) do n = n + 1 end
  return n
end

local function reloaded(snap)
  local fields = { "generation", snap.generation, "strategies", count(snap.strategies), "agents",
    count(snap.agents), "aggregators", count(snap.aggregators), "errors", #snap.errors }
  if #snap.errors > 0 then
    log.warn_with(fields, "registry reloaded; %d scripts failed to load", #snap.errors)
  else
    log.info_with(fields, "registry reloaded")
  end
end

function M.attach(engine)
  local debug = log.level <= 1
  if log.level > 3 then return function() end end
  local fn
  if debug then
    fn = function(e)
      local t = e.type
      if t == "execution.status" then
        execution_event(e)
      elseif t == "step.status" or STEP_MSG[t] then
        step_event(e, t)
      end
    end
  else
    fn = function(e)
      if e.type == "execution.status" then execution_event(e) end
    end
  end
  -- Below info nothing of executions is recorded: no subscriber at all.
  local token = log.level <= 2 and engine.bus:subscribe(fn)
  local reg = engine.registry
  local previous = reg.on_reload
  reg.on_reload = function(snap)
    if previous then previous(snap) end
    reloaded(snap)
  end
  return function()
    if token then engine.bus:unsubscribe(token) end
    reg.on_reload = previous
  end
end

return M
