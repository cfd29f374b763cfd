-- chorus.context: the `ctx` a strategy receives. The whole scripting API
-- of a strategy is here; everything heavy happens in chorus.step.
--
--   ctx:run_step(step [, {on_failure = ...}]) -> ok, output_or_err
--   ctx:spawn(fn, ...) -> task          a child task (join with task:join())
--   ctx:wait(tasks) -> true             wait for all
--   ctx:wait(tasks, {any = true}) -> i, task   first one done
--   ctx:wait(fns, {limit = n}) -> tasks run functions, at most n at a time
--   ctx:ordered(steps) -> steps         dependency order, stable
--   ctx:graph(steps) -> {roots, indegree, dependents}  (shared: read only)
--   ctx:output(step_id)                 a step's (effective) output
--   ctx:aggregate(results [, name, opts]) -> output, info | nil, err
--   ctx:record_consensus(group, output, info), ctx:answered_by(step_id)
--   ctx.steps (primary steps: not is_fallback), ctx.settings, ctx.log
local sched = require "chorus.sched"
local step_exec = require "chorus.step"
local log = require "chorus.log"

local Ctx = {}
Ctx.__index = Ctx

local M = {}

-- A ctx's shared fields (steps, settings, log) live in a class per config
-- (weak: it goes with the config); its own table holds what is per
-- execution.
local classes = setmetatable({}, { __mode = "k" })

function M.new(exec)
  local cfg = exec.config
  local class = classes[cfg]
  if not class then
    class = setmetatable({ steps = exec.primary_steps, settings = cfg.settings, log = log }, Ctx)
    class.__index = class
    classes[cfg] = class
  end
  return setmetatable({ exec = exec, execution_id = exec.id, trace_id = exec.trace_id }, class)
end

function Ctx:run_step(step, opts)
  return step_exec.run(self.exec, step, opts)
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
  return self.exec.effective[step_id]
end

-- graph(steps) -> {roots = {step...}, indegree = {[step] = n},
-- dependents = {[id] = {step...}}} of the dependencies among these steps,
-- computed once per steps list (weak: it goes with the config) — per
-- execution a strategy only copies what it changes.
local graphs = setmetatable({}, { __mode = "k" })

function Ctx:graph(steps)
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

-- Steps in dependency order; among ready steps, declaration order wins.
-- Dependencies on steps outside the list are treated as satisfied.
function Ctx:ordered(steps)
  local in_list, placed, out = {}, {}, {}
  for _, s in ipairs(steps) do in_list[s.id] = true end
  local progress = true
  while #out < #steps and progress do
    progress = false
    for _, s in ipairs(steps) do
      if not placed[s.id] then
        local ready = true
        for _, d in ipairs(s.dependencies) do
          if in_list[d] and not placed[d] then ready = false break end
        end
        if ready then
          placed[s.id] = true
          out[#out + 1] = s
          progress = true
          break
        end
      end
    end
  end
  return out
end

-- aggregate(results [, name [, opts]]): results is an array of
-- {step_id, ok, output, error, weight}. name defaults to
-- settings.aggregator or "majority"; the rule comes from the pinned registry.
function Ctx:aggregate(results, name, opts)
  name = name or self.settings.aggregator or "majority"
  local entry = self.exec.registry.aggregators[name]
  if not entry then return nil, ("unknown aggregator '%s'"):format(tostring(name)) end
  local ok, out, info = pcall(entry.module.aggregate, results, opts or self.settings.aggregator_options or {})
  if not ok then return nil, ("aggregator %s failed: %s"):format(name, tostring(out)) end
  if out == nil then return nil, info end
  info = info or {}
  info.aggregator, info.aggregator_version = name, entry.version
  return out, info
end

function Ctx:record_consensus(group, output, info)
  local exec = self.exec
  exec.consensus = exec.consensus or {}
  exec.consensus_outputs = exec.consensus_outputs or {}
  info.output = output
  exec.consensus[group] = info
  exec.consensus_outputs[group] = output
end

function Ctx:answered_by(step_id)
  self.exec.answered_by = step_id
end

return M
