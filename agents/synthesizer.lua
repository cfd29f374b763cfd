-- synthesizer: DEMO stand-in for the LLM that writes the operator's answer
-- (the real adapter calls an OpenAI-compatible chat API). Composes the
-- answer from its dependencies' outputs, deterministically.
local sched = require "chorus.sched"

return {
  name = "synthesizer",
  version = "0.1.0-demo",
  description = "Demo: simulated answer synthesis.",
  schema = { fields = { ms = { type = "number", default = 60, min = 0, max = 60000 } } },
  call = function(input, ctx)
    local ok, why = sched.sleep(ctx.params.ms or 60)
    if not ok then return nil, why end
    local st = input.job_status or {}
    local logs = input.log_findings or {}
    local kb = input.rag_context or {}
    local doc = kb.documents and kb.documents[1]
    local answer
    if st.status == "ABEND" then
      answer = ("Job %s ended %s with RC %s: %s. Suggested action: %s"):format(
        tostring(st.job_name), st.status, tostring(st.return_code), logs.summary or "cause unknown",
        doc and doc.text or "check the job log")
    else
      answer = ("Job %s completed normally (%s)."):format(tostring(st.job_name), tostring(st.status))
    end
    return { answer = answer, sources = doc and { doc.id } or {} }, { tokens = math.floor(#answer / 4) + 120, cost = 0.0004 }
  end,
}
