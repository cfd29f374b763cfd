-- chorus.engine.context: the `ctx` a strategy receives — the whole scripting API
-- of a strategy (v1, docs/scripting.md); everything heavy happens in
-- chorus.engine.step. Only what is listed here is reachable: reading any other
-- field of a ctx is an error naming it, so a script cannot grow a
-- dependency on the engine's insides.
--
--   ctx:run_step(step [, overrides]) -> ok, output_or_err
--       step: one of ctx.steps, or a new step {id, agent, params, input,
--       ...} the config does not list (recorded and persisted like the
--       others); overrides: {on_failure =, try_fallbacks =, input = {...}}
--   ctx:spawn_step(step [, overrides]) -> task   run_step in a child task
--   ctx:spawn(fn, ...) -> task                    a child task
--   ctx:wait(tasks) -> true                       wait for all
--   ctx:wait(tasks, {any = true}) -> i, task      the first one done
--   ctx:wait(fns, {limit = n}) -> tasks           run functions, n at a time
--   task:join() -> true, results... | nil, err;  task:cancel()
--   ctx:step(id) -> {id, status, output, error, reason, attempts, tokens,
--       cost, latency_ms, agent, agent_version, answered_by} | nil
--   ctx:output(step_id)                           a step's effective output
--   ctx:graph([steps]) -> {roots, indegree, dependents}  (shared: read only)
--   ctx:ordered([steps]) -> steps                 dependency order, stable
--   ctx:aggregate(results [, rule, opts]) -> output, info | nil, err
--   ctx:record_consensus(group, output, info), ctx:answered_by(step_id)
--   ctx.steps, ctx.settings, ctx.config (name), ctx.execution_id,
--   ctx.trace_id; ctx:log(level, fmt, ...) (tagged with the ids)
local sched = require "chorus.sched"
local step_exec = require "chorus.engine.step"
local validate = require "chorus.engine.validate"
local log = require "chorus.log"

local new_tab = require "table.new"

local Ctx = {}

local M = {}

-- The execution sits under a key of its own, not a name (see the header).
local EXEC = {}
M.EXEC = EXEC

-- Strategy-facing names a script may read; anything else raises.
local function no_such_field(_, k)
  error(("ctx has no field '%s' (the strategy API is in docs/scripting.md)"):format(tostring(k)), 2)
end

-- A ctx's shared fields (steps, settings, config) live in a class per
-- config (weak: it goes with the config); its own table holds what is per
-- execution.
local classes = setmetatable({}, { __mode = "k" })
local base = setmetatable(Ctx, { __index = no_such_field })

function M.new(exec)
  local cfg = exec.config
  local class = classes[cfg]
  if not class then
    class = setmetatable({ steps = exec.primary_steps, settings = cfg.settings, config = cfg.name }, { __index = base })
    class.__index = class
    classes[cfg] = class
  end
  -- Made at its size: a constructor with a computed key ([EXEC]) is
  -- sized for the other two, and the third was a rehash per execution.
  local ctx = new_tab(0, 3)
  ctx[EXEC], ctx.execution_id, ctx.trace_id = exec, exec.id, exec.trace_id
  return setmetatable(ctx, class)
end

-- log(level, fmt, ...): a log line that says which execution it is
-- about (level: debug | info | warn | error).
local LEVELS = { debug = true, info = true, warn = true, error = true }

function Ctx:log(level, fmt, ...)
  if not LEVELS[level] then error("ctx:log: level must be debug, info, warn or error", 2) end
  return log[level .. "_with"]({ trace_id = self.trace_id, execution_id = self.execution_id },
    "[execution %s trace %s] " .. tostring(fmt), self.execution_id, self.trace_id, ...)
end

-- dynamic(exec, step) -> the step config run_step runs: a declared step as
-- it is; a table that is not one of the config's steps is a step started
-- at run time, checked and added to the execution (the same id again
-- gives the same step: a resumed strategy replays it).
-- A new step, checked and added (a function of its own: the closure it
-- makes would keep dynamic(), which runs for every step, from being
-- compiled: LuaJIT's NYI UCLO).
local function add_dynamic(exec, step)
  local s, err = validate.dynamic_step(step, exec.registry, {
    step_of = function(id) return exec:step_of(id) end, settings = exec.config.settings })
  if not s then return nil, err end
  local sr, aerr = exec:add_step(s)
  if not sr then return nil, aerr end
  return exec:step_of(s.id)
end

local function dynamic(exec, step)
  if type(step) ~= "table" then
    return nil, "run_step: a step must be a table, got " .. type(step)
  end
  if type(step.id) == "string" and exec.steps_by_id[step.id] == step then return step end
  local existing = type(step.id) == "string" and exec:is_dynamic(step.id) and exec:step_of(step.id)
  if existing then return existing end
  return add_dynamic(exec, step)
end

function Ctx:run_step(step, overrides)
  local exec = self[EXEC]
  local s, err = dynamic(exec, step)
  if not s then return false, err end
  return step_exec.run(exec, s, overrides)
end

-- spawn_step(step, overrides) -> task: run_step in a child task (its frame
-- is run_step's own: nothing of the strategy stays under the agent).
function Ctx:spawn_step(step, overrides)
  return sched.spawn(Ctx.run_step, self, step, overrides)
end

-- A strategy's own functions run as script code in their tasks (the
-- watchdog may interrupt them); ctx.run_step is the framework's.
local SCRIPT = { script = true }

function Ctx:spawn(fn, ...)
  if fn == Ctx.run_step then return sched.spawn(fn, ...) end
  return sched.spawn_with(SCRIPT, fn, ...)
end

function Ctx:wait(tasks, opts)
  if opts and opts.any then return sched.wait_any(tasks) end
  if opts and opts.limit then return sched.run_limited(tasks, opts.limit, SCRIPT) end
  return sched.wait_all(tasks)
end

function Ctx:output(step_id)
  return self[EXEC].effective[step_id]
end

-- step(id) -> a copy of what is known of a step's run, or nil.
function Ctx:step(id)
  local exec = self[EXEC]
  local sr = exec:run_of(id)
  if not sr then return nil end
  local cfg = exec:step_of(id)
  return {
    id = sr.id, status = sr.status, output = sr.output, error = sr.error, reason = sr.reason,
    attempts = sr.attempts, tokens = sr.tokens or 0, cost = sr.cost or 0, latency_ms = sr.latency_ms,
    agent = cfg.agent, agent_version = sr.agent_version, answered_by = sr.answered_by,
  }
end

-- graph([steps]) -> {roots = {step...}, indegree = {[step] = n},
-- dependents = {[id] = {step...}}} of the dependencies among these steps
-- (default: ctx.steps), computed once per steps list (weak: it goes with
-- the config) — per execution a strategy only copies what it changes.
local graphs = setmetatable({}, { __mode = "k" })

function Ctx:graph(steps)
  steps = steps or self.steps
  local g = graphs[steps]
  if g then return g end
  g = { roots = {}, indegree = {}, dependents = {} }
  for _, step in ipairs(steps) do
    local deps = step.dependencies
    g.indegree[step] = #deps
    for i = 1, #deps do
      local list = g.dependents[deps[i]]
      if not list then list = {} g.dependents[deps[i]] = list end
      list[#list + 1] = step
    end
    if #deps == 0 then g.roots[#g.roots + 1] = step end
  end
  graphs[steps] = g
  return g
end

-- ordered([steps]): dependency order; among ready steps, declaration
-- order wins (a heap by declaration index: linear in the steps and their
-- dependencies, not quadratic). Dependencies on steps outside the list
-- are treated as satisfied.
local ordered_cache = setmetatable({}, { __mode = "k" })

local function build_ordered(steps)
  local pos, indeg, dependents = {}, {}, {}
  for i, s in ipairs(steps) do pos[s.id] = i end
  for i, s in ipairs(steps) do
    local n = 0
    for _, d in ipairs(s.dependencies) do
      if pos[d] then
        n = n + 1
        local l = dependents[d]
        if not l then l = {} dependents[d] = l end
        l[#l + 1] = i
      end
    end
    indeg[i] = n
  end
  -- a min-heap of ready step indexes
  local heap = {}
  local function push(x)
    heap[#heap + 1] = x
    local c = #heap
    while c > 1 do
      local p = math.floor(c / 2)
      if heap[p] <= heap[c] then break end
      heap[p], heap[c] = heap[c], heap[p]
      c = p
    end
  end
  local function pop()
    local top, last = heap[1], heap[#heap]
    heap[#heap] = nil
    if #heap > 0 then
      heap[1] = last
      local c = 1
      while true do
        local l, r, m = 2 * c, 2 * c + 1, c
        if l <= #heap and heap[l] < heap[m] then m = l end
        if r <= #heap and heap[r] < heap[m] then m = r end
        if m == c then break end
        heap[m], heap[c] = heap[c], heap[m]
        c = m
      end
    end
    return top
  end
  for i = 1, #steps do
    if indeg[i] == 0 then push(i) end
  end
  local out = {}
  while #heap > 0 do
    local i = pop()
    out[#out + 1] = steps[i]
    for _, j in ipairs(dependents[steps[i].id] or {}) do
      indeg[j] = indeg[j] - 1
      if indeg[j] == 0 then push(j) end
    end
  end
  ordered_cache[steps] = out
  return out
end

-- The cached answer apart from the builder: the builder's closures close
-- upvalues (bytecode UCLO), which LuaJIT does not compile, and a strategy
-- asks on every run (a trace through `sequential`'s loop aborted there,
-- and the loop ran interpreted).
function Ctx:ordered(steps)
  steps = steps or self.steps
  return ordered_cache[steps] or build_ordered(steps)
end

-- aggregate(results [, name [, opts]]): results is an array of
-- {step_id, ok, output, error, weight}. name defaults to
-- settings.aggregator or "majority"; the rule comes from the pinned registry.
function Ctx:aggregate(results, name, opts)
  name = name or self.settings.aggregator or "majority"
  local entry = self[EXEC].registry.aggregators[name]
  if not entry then return nil, ("unknown aggregator '%s'"):format(tostring(name)) end
  local ok, out, info = pcall(entry.module.aggregate, results, opts or self.settings.aggregator_options or {})
  if not ok then return nil, ("aggregator %s failed: %s"):format(name, tostring(out)) end
  if out == nil then return nil, info end
  info = info or {}
  info.aggregator, info.aggregator_version = name, entry.version
  return out, info
end

function Ctx:record_consensus(group, output, info)
  local exec = self[EXEC]
  exec.consensus = exec.consensus or {}
  exec.consensus_outputs = exec.consensus_outputs or {}
  info.output = output
  exec.consensus[group] = info
  exec.consensus_outputs[group] = output
end

function Ctx:answered_by(step_id)
  self[EXEC].answered_by = step_id
end

return M
