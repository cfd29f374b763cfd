-- chorus.metrics.engine: the series of an engine, counted from its event
-- bus (executions, steps, tokens and cost, the step cache, rate-limit
-- waits) or read at scrape time (tasks, Lua heap, registry, the memory
-- store's archive), and chorus_build_info. Every process that runs
-- executions counts its own; Prometheus sums them over nodes.
--
--   require("chorus.metrics.engine").register(reg, engine) -> reg
--
-- Labels are bounded: agent (the scripts loaded), config (the configs
-- that exist), status (the states of chorus.engine.states), never an id.
local metrics = require "chorus.metrics"
local native = require "chorus.native"

local M = {}

local ENDED = require("chorus.engine.states").execution_terminal

-- luajit label: the VM's version and the branch it was built against
-- (both matter: an upstream snapshot miscompiles pairs() loops).
local function luajit_label()
  return ("%s (%s)"):format(jit and jit.version or _VERSION, native.luajit_branch or "unknown branch")
end

function M.register(reg, engine)
  reg:gauge("chorus_build_info", "Always 1; the labels say which Chorus and which LuaJIT run here.",
    { "version", "luajit" }):set(1, native.version, luajit_label())

  local transitions = reg:counter("chorus_execution_transitions_total",
    "Execution status transitions, by the status entered (running counts starts and resumes).", { "status" })
  local exec_duration = reg:histogram("chorus_execution_duration_seconds",
    "Duration of ended executions (first start to end), by config and final status.",
    { "config", "status" }, metrics.EXECUTION_BUCKETS)
  local step_tr = reg:counter("chorus_step_transitions_total",
    "Step run status transitions, by agent and status entered.", { "agent", "status" })
  local retries = reg:counter("chorus_step_retries_total", "Step attempts that failed and were retried, by agent.",
    { "agent" })
  local step_duration = reg:histogram("chorus_step_duration_seconds",
    "Duration of step runs that completed or failed (all attempts and their backoff), by agent and status.",
    { "agent", "status" }, metrics.STEP_BUCKETS)
  local tokens = reg:counter("chorus_step_tokens_total",
    "Tokens used by step runs, counted when each run ends (failed attempts included), by agent and config.",
    { "agent", "config" })
  local cost = reg:counter("chorus_step_cost_total",
    "Cost of step runs in the price table's currency (USD as shipped), counted when each run ends, by agent and config.",
    { "agent", "config" })
  local cache = reg:counter("chorus_step_cache_requests_total",
    "Step cache lookups, by agent and result (hit: the step's output came from the cache; miss: the agent ran).",
    { "agent", "result" })
  local rate_wait = reg:histogram("chorus_rate_limit_wait_seconds",
    "Time steps waited for a rate limit's next slot before calling their agent, by agent.",
    { "agent" }, metrics.WAIT_BUCKETS)

  reg:gauge("chorus_tasks_live", "Tasks (coroutines) not yet done.", {}, require("chorus.sched").live_tasks)
  reg:gauge("chorus_lua_heap_bytes", "Bytes in use in the Lua heap.", {},
    function() return collectgarbage("count") * 1024 end)
  if engine.store.archive then -- the memory store's ended executions outside the Lua heap
    local archive = engine.store.archive
    reg:gauge("chorus_store_archived_executions",
      "Ended executions the memory store keeps serialized, outside the Lua heap.", {},
      function() return archive:count() end)
    reg:gauge("chorus_store_archive_bytes", "Bytes of the ended executions the memory store keeps serialized.", {},
      function() return archive:bytes() end)
  end
  local registry = engine.registry
  reg:gauge("chorus_registry_generation", "The script registry's generation (1 + reloads so far).", {},
    function() return registry.generation end)
  reg:counter("chorus_registry_reloads_total", "Script registry reloads (file changes, SIGHUP, the API).", {},
    function() return registry.reloads end)
  reg:gauge("chorus_registry_load_errors", "Scripts that failed to load in the current generation.", {},
    function() return #registry:snapshot().errors end)
  reg:gauge("chorus_registry_loaded_timestamp_seconds", "When the current generation was loaded (Unix time).", {},
    function() return registry:snapshot().loaded_at end)
  local bus = engine.bus
  reg:counter("chorus_events_emitted_total", "Events emitted on this process's engine bus.", {},
    function() return bus.emitted end)
  reg:counter("chorus_event_subscriber_errors_total", "Event subscribers that raised.", {},
    function() return bus.errors end)

  bus:subscribe(function(e)
    local t = e.type
    if t == "step.status" then
      local st, agent = e.status, e.agent
      step_tr:inc(1, agent, st)
      if ENDED[st] then
        if e.latency_ms and st ~= "cancelled" then step_duration:observe(e.latency_ms / 1000, agent, st) end
        if e.tokens and e.tokens > 0 then tokens:inc(e.tokens, agent, e.config) end
        if e.cost and e.cost > 0 then cost:inc(e.cost, agent, e.config) end
      end
    elseif t == "execution.status" then
      local st = e.status
      transitions:inc(1, st)
      if ENDED[st] and e.latency_ms then exec_duration:observe(e.latency_ms / 1000, e.config, st) end
    elseif t == "step.retry" then
      retries:inc(1, e.agent)
    elseif t == "step.cache" then
      cache:inc(1, e.agent, e.hit and "hit" or "miss")
    elseif t == "step.rate_limited" then
      local ms = tonumber(e.wait_ms)
      if ms and ms >= 0 then rate_wait:observe(ms / 1000, e.agent) end
    end
  end)
  return reg
end

return M
