-- wrk script: POST /api/v1/orchestrations/execute/<config> with a small
-- JSON body; prints one JSON line of figures when done.
--   BENCH_KEY=chk_... BENCH_CONFIG=name wrk -s post_execute.lua URL
-- (shared with get_status.lua through bench/api/wrk_report.lua)
local key = assert(os.getenv("BENCH_KEY"), "BENCH_KEY is not set")
local config = assert(os.getenv("BENCH_CONFIG"), "BENCH_CONFIG is not set")

wrk.method = "POST"
wrk.path = "/api/v1/orchestrations/execute/" .. config
wrk.body = '{"input":{"job_name":"PAYROLL_DAILY","n":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

done = dofile((os.getenv("BENCH_DIR") or "bench/api") .. "/wrk_report.lua")
