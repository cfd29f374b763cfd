-- status_handler: DEMO stand-in for the TWS job-status lookup (the real
-- adapter queries the Workload Scheduler REST API). Deterministic: the job
-- status is derived from the job name, after params.ms of simulated I/O.
local sched = require "chorus.sched"

return {
  name = "status_handler",
  version = "0.1.0-demo",
  description = "Demo: simulated TWS job status lookup.",
  schema = { fields = { ms = { type = "number", default = 120, min = 0, max = 60000 } } },
  call = function(input, ctx)
    local ok, why = sched.sleep(ctx.params.ms or 120)
    if not ok then return nil, why end
    local job = input.job_name or "UNKNOWN"
    local failed = #job % 2 == 1
    return {
      job_name = job,
      status = failed and "ABEND" or "SUCC",
      return_code = failed and 12 or 0,
      workstation = "MASTER_CPU",
      scheduled_at = "2026-11-24T02:00:00Z",
    }
  end,
}
