-- race: every step runs at once; the first to succeed answers, the rest
-- are cancelled (recorded "cancelled", not failed). When every step
-- fails, the execution fails with all their errors.
-- Run it: build/chorus run examples/race.json --scripts examples/scripts
return {
  name = "race",
  version = "1.0.0",
  description = "Run the steps at once; the first success wins, the others are cancelled.",
  run = function(ctx, steps)
    local tasks = {}
    for i, step in ipairs(steps) do
      tasks[i] = ctx:spawn_step(step, { on_failure = "continue" })
    end
    local left, errors = #tasks, {}
    while left > 0 do
      local i = ctx:wait(tasks, { any = true })
      if not i then return nil, "cancelled" end
      local _, ok, out = tasks[i]:join()
      if ok then
        for j, t in ipairs(tasks) do
          if j ~= i then t:cancel() end
        end
        ctx:answered_by(steps[i].id)
        ctx:log("info", "race won by %s", steps[i].id)
        return out
      end
      errors[#errors + 1] = steps[i].id .. ": " .. tostring(out)
      table.remove(tasks, i)
      table.remove(steps, i)
      left = left - 1
    end
    return nil, "no step answered (" .. table.concat(errors, "; ") .. ")"
  end,
}
