-- chorus.sched: the task API Lua code uses (over chorus.native).
--
-- Every execution and every concurrent step runs in a task: a coroutine the
-- C scheduler resumes when its I/O completes. Tasks form a tree: cancelling
-- a task cancels its children, and a task whose body returns cancels the
-- children still running (nothing outlives the body that started it).
-- Waiting functions return `nil, "cancelled"` or `nil, "timeout"` when the
-- waiting task itself is cancelled or passes its deadline.
local native = require "chorus.native"
local clock = require "chorus.clock"

local spawn_native, wait_native = native.spawn, native.wait
local suspend, current = native.suspend, native.current
local ipairs, select, remove = ipairs, select, table.remove

local M = {
  sleep = native.sleep,       -- sleep(ms) -> true | nil, reason
  -- defer() -> true | nil, reason: waits until the loop has polled for
  -- I/O; tasks that defer resume one a loop iteration, in turn, with what
  -- I/O brought handled between them (bookkeeping that must not hold up
  -- the streams still flowing: runtime/rt_sched.h, rt_sched_defer).
  defer = native.defer,
  now = clock.now,            -- monotonic ms (chorus.clock: compiled into traces)
  time = clock.time,          -- wall clock seconds
  current = current,          -- the running task
  cancelled = native.cancelled, -- reason the running task was cancelled
  live_tasks = native.live_tasks,
  -- scope_open(ms) -> true (false inside an open scope); scope_close() ->
  -- true if the deadline passed. The parts of with_deadline, for a caller
  -- that must not add a frame between itself and fn (chorus.engine.step).
  scope_open = native.scope_open,
  scope_close = native.scope_close,
}

-- yield_due() -> true when the running resume is script code that has
-- used a quarter of its CPU budget (the watchdog's thread says so). The
-- engine checks it where it may yield safely (before a step's agent
-- runs): a strategy whose agents never yield would otherwise run every
-- step, and the engine's work for each, in one resume, and be interrupted
-- for CPU the engine spent (and keep the loop from its sockets that long).
-- Through LuaJIT's FFI (compiled into the caller's trace; the export is
-- the binary's, rt_lua_watchdog.h), or the classic native elsewhere.
M.yield_due = native.resume_long
do
  local ok, ffi = pcall(require, "ffi")
  if ok and pcall(ffi.cdef, "int chorus_resume_long(void);")
    and pcall(function() return ffi.C.chorus_resume_long end) then
    local C = ffi.C
    M.yield_due = function() return C.chorus_resume_long() ~= 0 end
  end
end

-- spawn(fn, ...) -> task: a child of the running task.
function M.spawn(fn, ...)
  return spawn_native(nil, fn, ...)
end

-- spawn_with({timeout_ms = n, detached = bool, script = bool}, fn, ...) -> task
-- script: fn is script code (a strategy's or agent's): the watchdog times
-- the task's resumes and may interrupt it (chorus.engine.script_env).
function M.spawn_with(opts, fn, ...)
  return spawn_native(opts, fn, ...)
end

local scope_open, scope_close = native.scope_open, native.scope_close
local traceback, unpack_ = debug.traceback, unpack

local function pack(...) return { n = select("#", ...), ... } end

-- with_deadline(ms, fn, ...) -> true, results... | nil, err
-- Runs fn(...) in the running task, under a deadline of its own: once ms
-- have passed, fn's waits return nil, "timeout" at once (its pending I/O
-- is aborted) and tasks it started are cancelled; then with_deadline
-- returns nil, "timeout". A Lua error in fn returns nil, message with a
-- traceback. Cheaper than a task per call: no coroutine is made. Inside
-- another with_deadline it falls back to a child task with a deadline.
function M.with_deadline(ms, fn, ...)
  if not scope_open(ms) then
    return spawn_native({ timeout_ms = ms }, fn, ...):join()
  end
  local r = pack(xpcall(fn, traceback, ...))
  if scope_close() then return nil, "timeout" end
  if not r[1] then return nil, r[2] end
  return true, unpack_(r, 2, r.n)
end

local methods = native.task_methods

-- task:join() -> true, results... | nil, err
-- err is the task's error (with traceback), "cancelled" or "timeout"; also
-- `nil, reason` when the joining task is itself cancelled.
function methods:join()
  local ok, why = wait_native({ self }, 1)
  if not ok then return nil, why end
  return self:result()
end

-- wait_all(tasks) -> true | nil, reason
function M.wait_all(tasks)
  return wait_native(tasks, #tasks)
end

local function first_done(tasks)
  for i, t in ipairs(tasks) do
    if t:done() then return i, t end
  end
  return nil, "no task" -- unreachable when tasks is non-empty
end

-- wait_any(tasks) -> index, task of a done task | nil, reason
-- Kept to a few stack slots: a waiting strategy's coroutine whose frames
-- need under a quarter of its stack gets that stack halved by the GC, and
-- an execution in flight waits here.
function M.wait_any(tasks)
  local ok, why = wait_native(tasks, 1)
  if not ok then return nil, why end
  return first_done(tasks)
end

-- A condition: tasks wait until another task signals. Used for pause,
-- approvals and event subscriptions.
local Cond = {}
Cond.__index = Cond

function M.cond()
  return setmetatable({ waiters = {} }, Cond)
end

-- cond:wait() -> values given to signal (true if none) | nil, reason
function Cond:wait()
  local me = current()
  local ws = self.waiters
  ws[#ws + 1] = me
  local r = { suspend() }
  if r[1] == nil then
    for i = #ws, 1, -1 do
      if ws[i] == me then remove(ws, i) break end
    end
  end
  return unpack(r, 1, table.maxn(r))
end

-- cond:signal(...) wakes every waiting task with the values.
function Cond:signal(...)
  local ws = self.waiters
  if #ws == 0 then return end
  self.waiters = {}
  for _, t in ipairs(ws) do t:wake(...) end
end

function Cond:has_waiters()
  return #self.waiters > 0
end

-- run_limited(fns, limit [, spawn_opts]) runs the functions as child tasks
-- (spawned with spawn_opts, e.g. {script = true}), at most limit
-- at a time, and returns the array of their tasks once all are done (or
-- nil, reason if the caller is cancelled: the children are cancelled too).
function M.run_limited(fns, limit, spawn_opts)
  local tasks, running, next_i = {}, {}, 1
  limit = limit or #fns
  while next_i <= #fns or #running > 0 do
    while next_i <= #fns and #running < limit do
      local t = spawn_native(spawn_opts, fns[next_i])
      tasks[next_i], running[#running + 1] = t, t
      next_i = next_i + 1
    end
    local i, why = M.wait_any(running)
    if not i then
      for _, t in ipairs(running) do t:cancel() end
      return nil, why
    end
    remove(running, i)
  end
  return tasks
end

M.select = select
return M
