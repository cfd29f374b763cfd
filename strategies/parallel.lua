-- parallel: the steps form a DAG; a step starts as soon as all of its
-- dependencies are settled (completed, or failed with on_failure =
-- continue), and never more than settings.parallel_limit steps are in
-- flight. A failure with on_failure = abort cancels the steps in flight.
-- Output: the output of the last declared step (the DAG's final step by
-- convention; set settings.output_step to pick another).
--
-- run() keeps few locals and leaves the work to helpers: while it waits,
-- its frame needing under a quarter of the task's stack lets the GC halve
-- that stack (every execution in flight waits here).
local ANY = { any = true }

-- Starts ready steps while the limit allows, each in a task of its own
-- (ctx.run_step itself: no wrapper frame under the agent). running[i] is
-- the task of running_steps[i]. Returns the next ready index.
local function launch(ctx, ready, next_ready, running, running_steps, limit)
  while next_ready <= #ready and #running < limit do
    local step = ready[next_ready]
    next_ready = next_ready + 1
    running[#running + 1] = ctx:spawn(ctx.run_step, ctx, step)
    running_steps[#running] = step
  end
  return next_ready
end

-- Task i of running is done: its dependents whose dependencies are all
-- settled become ready.
local function settle(graph, waiting, ready, running, running_steps, i)
  local ok, err = table.remove(running, i):join()
  if not ok then error(err, 0) end -- a framework bug: report it
  local done_step = table.remove(running_steps, i)
  for _, d in ipairs(graph.dependents[done_step.id] or {}) do
    waiting[d] = (waiting[d] or graph.indegree[d]) - 1
    if waiting[d] == 0 then ready[#ready + 1] = d end
  end
end

return {
  name = "parallel",
  version = "1.0.0",
  description = "Run a dependency graph with bounded parallelism.",
  run = function(ctx, steps, settings)
    local graph = ctx:graph(steps) -- roots, indegree, dependents (shared)
    local ready, waiting, running, running_steps = {}, {}, {}, {}
    for i, step in ipairs(graph.roots) do ready[i] = step end
    local next_ready = 1
    while next_ready <= #ready or #running > 0 do
      next_ready = launch(ctx, ready, next_ready, running, running_steps, settings.parallel_limit or #steps)
      local i, task = ctx:wait(running, ANY)
      if not i then return nil, task end -- cancelled or aborted
      settle(graph, waiting, ready, running, running_steps, i)
    end
    return ctx:output(steps[#steps].id)
  end,
}
