-- consensus: steps sharing a consensus_group run concurrently (at most
-- settings.parallel_limit at a time) and their outputs are combined by the
-- aggregation rule settings.aggregator (default majority, over canonical
-- JSON). The group is decided when score >= settings.consensus_threshold;
-- otherwise the execution fails. A step without a group is a group of one.
-- Groups run one after another in order of first appearance; later steps
-- see each decided group's output in their input as consensus.<group>.
-- Output: the decided output of the last group.
return {
  name = "consensus",
  version = "1.0.0",
  description = "Ask several agents, aggregate their answers, require agreement.",
  run = function(ctx, steps, settings)
    local groups, order = {}, {}
    for _, step in ipairs(ctx:ordered(steps)) do
      local g = step.consensus_group or step.id
      if not groups[g] then groups[g] = {}; order[#order + 1] = g end
      table.insert(groups[g], step)
    end

    local threshold = settings.consensus_threshold or 0.5
    local output
    for _, g in ipairs(order) do
      local members, fns = groups[g], {}
      for i, step in ipairs(members) do
        fns[i] = function() return ctx:run_step(step, { on_failure = "continue" }) end
      end
      local tasks, why = ctx:wait(fns, { limit = settings.parallel_limit or #fns })
      if not tasks then return nil, why end
      local results = {}
      for i, t in ipairs(tasks) do
        local _, ok, out = t:join()
        results[i] = { step_id = members[i].id, ok = ok, weight = members[i].weight,
                       output = ok and out or nil, error = not ok and out or nil }
      end
      local out, info = ctx:aggregate(results)
      if out == nil then return nil, ("group %s: %s"):format(g, tostring(info)) end
      ctx:record_consensus(g, out, info)
      if info.score < threshold then
        return nil, ("group %s: consensus not reached (score %.2f < threshold %.2f, %d of %d agreed)")
          :format(g, info.score, threshold, info.agreed, info.total)
      end
      output = out
    end
    return output
  end,
}
