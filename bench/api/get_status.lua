-- wrk script: GET /api/v1/orchestrations/status/<trace_id> of one
-- finished execution; prints one JSON line of figures when done.
--   BENCH_KEY=chk_... BENCH_TRACE=uuid wrk -s get_status.lua URL
local key = assert(os.getenv("BENCH_KEY"), "BENCH_KEY is not set")
local trace = assert(os.getenv("BENCH_TRACE"), "BENCH_TRACE is not set")

wrk.method = "GET"
wrk.path = "/api/v1/orchestrations/status/" .. trace
wrk.headers["Authorization"] = "Bearer " .. key

done = dofile((os.getenv("BENCH_DIR") or "bench/api") .. "/wrk_report.lua")
