-- streamer (browser test fixture): writes its answer a word at a time, as
-- an LLM streams tokens: each word goes out as a step.delta event
-- (ctx:delta), params.interval_ms apart; then returns the whole text with
-- token and cost meta. A cancel or timeout ends it mid-answer.
local sched = require "chorus.sched"

return {
  name = "streamer",
  version = "1.0.0",
  description = "Streams params.words one by one (step.delta), then returns them joined.",
  schema = { fields = {
    words = { type = "array", items = { type = "string" }, required = true, description = "the answer, word by word" },
    interval_ms = { type = "integer", min = 0, max = 60000, default = 150, description = "pause between words" },
  } },
  call = function(_, ctx)
    local words = ctx.params.words
    for i, w in ipairs(words) do
      local ok, why = sched.sleep(ctx.params.interval_ms)
      if not ok then return nil, why end
      ctx:delta((i > 1 and " " or "") .. w)
    end
    return { answer = table.concat(words, " ") }, { tokens = #words * 3, cost = #words * 0.0001 }
  end,
}
