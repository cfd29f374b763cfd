-- chorus.clock: the engine's two clocks, now() (monotonic ms) and time()
-- (wall-clock seconds since the epoch), read through LuaJIT's FFI.
--
-- Why not native.now and native.time: a classic C function ends the
-- compiled trace it is called from (LuaJIT stitches a new one after the
-- call), and a step reads the clocks several times; an FFI call is
-- compiled into the trace (56 -> 37 ns a call here, and ~4 % more
-- back-to-back executions a second: bench/RESULTS.md, sitting 11). From interpreted code an FFI call
-- costs more than a classic one (110 against 44 ns), so only the engine's
-- hot path (chorus.sched, which the engine uses) reads the clocks here;
-- the API and the CLI keep native.now and native.time.
--
-- The C functions are exported by the chorus binary (rt_lua_util.h); a
-- host without them (not this binary) gets the native ones, and
-- clock.ffi says which.
local native = require "chorus.native"

local M = { now = native.now, time = native.time, ffi = false }

local ok, ffi = pcall(require, "ffi")
if ok then
  pcall(ffi.cdef, [[
double chorus_clock_now_ms(void);
double chorus_clock_time_s(void);
]])
  local C = ffi.C
  local found = pcall(function() return C.chorus_clock_now_ms and C.chorus_clock_time_s end)
  if found then
    M.now = function() return C.chorus_clock_now_ms() end
    M.time = function() return C.chorus_clock_time_s() end
    M.ffi = true
  end
end

return M
