-- rag_handler: DEMO stand-in for the knowledge-base search (the real
-- adapter queries a vector store). Returns canned runbook passages.
local sched = require "chorus.sched"

return {
  name = "rag_handler",
  version = "0.1.0-demo",
  description = "Demo: simulated knowledge-base search.",
  schema = { fields = { ms = { type = "number", default = 150, min = 0, max = 60000 } } },
  call = function(input, ctx)
    local ok, why = sched.sleep(ctx.params.ms or 150)
    if not ok then return nil, why end
    return {
      query = "job " .. tostring(input.job_name) .. " failure",
      documents = {
        { id = "KB-0113", title = "RC 12 on payroll jobs", score = 0.91,
          text = "RC 12 with SQL0911N: rerun the job after the nightly backup window." },
        { id = "KB-0087", title = "Restarting ABENDed jobs", score = 0.78,
          text = "Use conman 'rr' to rerun from the failed step." },
      },
    }
  end,
}
