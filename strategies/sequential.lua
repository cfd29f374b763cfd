-- sequential: one step at a time, in dependency order (declaration order
-- among steps that are ready). A failing step with on_failure = abort stops
-- the execution; with continue the next step runs.
-- Output: the output of the last step (nil if it failed with continue).
return {
  name = "sequential",
  version = "1.0.0",
  description = "Run steps one after another in dependency order.",
  run = function(ctx, steps)
    local output
    for _, step in ipairs(ctx:ordered(steps)) do
      local ok, out = ctx:run_step(step)
      output = ok and out or nil
    end
    return output
  end,
}
