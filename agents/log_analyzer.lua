-- log_analyzer: DEMO stand-in for the job log analysis agent. It reads the
-- job status from its dependency and reports findings; params.fail_first
-- makes the first attempts fail to show retries.
local sched = require "chorus.sched"

return {
  name = "log_analyzer",
  version = "0.1.0-demo",
  description = "Demo: simulated job log analysis.",
  schema = { fields = {
    ms = { type = "number", default = 90, min = 0, max = 60000 },
    fail_first = { type = "integer", default = 0, min = 0, max = 100 },
  } },
  call = function(input, ctx)
    local ok, why = sched.sleep(ctx.params.ms or 90)
    if not ok then return nil, why end
    if ctx.attempt <= (ctx.params.fail_first or 0) then
      return nil, "log service unavailable (simulated)"
    end
    local status = input.job_status or {}
    if status.status ~= "ABEND" then
      return { findings = {}, summary = "no errors in the job log" }
    end
    return {
      findings = {
        { line = 1042, text = "EQQE036E JOB " .. tostring(status.job_name) .. " ENDED IN ERROR RC=12" },
        { line = 1039, text = "SQL0911N deadlock or timeout, rolled back" },
      },
      summary = "database deadlock during the payroll update step",
    }
  end,
}
