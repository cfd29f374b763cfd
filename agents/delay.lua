-- delay: sleeps params.ms without blocking the loop, then returns
-- params.output or {slept_ms = ms}. A step timeout or a cancel aborts the
-- sleep at once.
local sched = require "chorus.sched"

return {
  name = "delay",
  version = "1.0.0",
  description = "Sleep params.ms, then return params.output or {slept_ms}.",
  schema = { fields = {
    ms = { type = "number", required = true, min = 0, max = 86400000, description = "how long to sleep" },
    output = { type = "any", description = "fixed output to return" },
  } },
  -- No local before the sleep: a step task whose deepest call (this
  -- sleep) stays within a new coroutine's 40 slots never grows its stack.
  call = function(_, ctx)
    local ok, why = sched.sleep(ctx.params.ms)
    if not ok then return nil, why end
    local out = ctx.params.output
    if out ~= nil then return out end
    return { slept_ms = ctx.params.ms }
  end,
}
