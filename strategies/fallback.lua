-- fallback: the steps are alternatives tried in dependency order until one
-- answers; the rest are skipped. Each step's own chain (steps with
-- is_fallback and fallback_for = its id) is tried before moving on, so a
-- chain can be as deep as needed. The execution records which step
-- answered; it fails when no alternative answers.
-- Output: the answer.
return {
  name = "fallback",
  version = "1.0.0",
  description = "Try alternatives in order; the first answer wins.",
  run = function(ctx, steps)
    local errors = {}
    for _, step in ipairs(ctx:ordered(steps)) do
      local ok, out = ctx:run_step(step, { on_failure = "continue", try_fallbacks = true })
      if ok then
        local answered = ctx:step(step.id).answered_by or step.id
        ctx:answered_by(answered)
        return out
      end
      errors[#errors + 1] = step.id .. ": " .. tostring(out)
    end
    return nil, "no alternative answered (" .. table.concat(errors, "; ") .. ")"
  end,
}
