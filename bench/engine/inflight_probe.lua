-- bench/engine/inflight_probe.lua: what N executions of the reference
-- workload cost while they all wait (agents are `delay`s of MS, long
-- enough that none ends): live Lua heap (after a full collection), C heap
-- (glibc mallinfo2) and RSS, in total and per execution.
--
--   chorus lua bench/engine/inflight_probe.lua [N [MS]]   (100000, 1500)
local ffi = require "ffi"
local engine_mod = require "chorus.engine"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

ffi.cdef [[
struct mallinfo2 { size_t arena, ordblks, smblks, hblks, hblkhd, usmblks,
                   fsmblks, uordblks, fordblks, keepcost; };
struct mallinfo2 mallinfo2(void);
]]

local n, ms = ...
n, ms = tonumber(n) or 100000, tonumber(ms) or 1500
local workload = os.getenv("WORKLOAD") or "../shared/bench/workload.json"
local f = assert(io.open(workload, "rb"))
local doc = assert(json.decode(f:read("*a")))
f:close()
for _, s in ipairs(doc.steps) do s.agent, s.params = "delay", { ms = ms } end
local engine = engine_mod.new({ store_opts = { max_finished = 0 } })
local cfg = assert(engine:validate(doc))

local function c_heap() return tonumber(ffi.C.mallinfo2().uordblks) end
local function live() collectgarbage() collectgarbage() return collectgarbage("count") * 1024 end
local lua0, c0 = live(), c_heap()
local ended = 0
for i = 1, n do
  engine:execute(cfg, { job_name = "JOB_" .. (i % 3) }, { detached = true }).on_end = function() ended = ended + 1 end
end
sched.sleep(ms * 0.4) -- every execution is in its first two steps now
local lua1, c1, rss1 = live(), c_heap(), native.rss()
local mb = 1048576
io.stdout:write(json.encode({
  n = n, agent_ms = ms, all_waiting = (ended == 0),
  lua_live_mb = (lua1 - lua0) / mb, c_heap_mb = (c1 - c0) / mb, rss_mb = rss1 / mb,
  lua_bytes_per_exec = (lua1 - lua0) / n, c_bytes_per_exec = (c1 - c0) / n,
}), "\n")
while ended < n do sched.sleep(50) end
