-- parallel: the steps form a DAG; a step starts as soon as all of its
-- dependencies are settled (completed, or failed with on_failure =
-- continue), and never more than settings.parallel_limit steps are in
-- flight. A failure with on_failure = abort cancels the steps in flight.
-- Output: the output of the last declared step (the DAG's final step by
-- convention; set settings.output_step to pick another).
-- One step in its own task; returns the step so the loop knows who ended.
local function run_one(ctx, step)
  ctx:run_step(step)
  return step
end

return {
  name = "parallel",
  version = "1.0.0",
  description = "Run a dependency graph with bounded parallelism.",
  run = function(ctx, steps, settings)
    local limit = settings.parallel_limit or #steps
    local graph = ctx:graph(steps) -- roots, indegree, dependents (shared)
    local waiting, ready = {}, {}
    for i, step in ipairs(graph.roots) do ready[i] = step end

    local running, next_ready = {}, 1
    while next_ready <= #ready or #running > 0 do
      while next_ready <= #ready and #running < limit do
        local step = ready[next_ready]
        next_ready = next_ready + 1
        running[#running + 1] = ctx:spawn(run_one, ctx, step)
      end
      local i, task = ctx:wait(running, { any = true })
      if not i then return nil, task end -- cancelled or aborted
      table.remove(running, i)
      local ok, done_step = task:join()
      if not ok then error(done_step, 0) end -- a framework bug: report it
      for _, d in ipairs(graph.dependents[done_step.id] or {}) do
        waiting[d] = (waiting[d] or graph.indegree[d]) - 1
        if waiting[d] == 0 then ready[#ready + 1] = d end
      end
    end
    return ctx:output(steps[#steps].id)
  end,
}
