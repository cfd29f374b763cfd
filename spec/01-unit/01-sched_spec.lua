-- The task API as Lua sees it: spawn, join, wait all/any, cancel, deadlines,
-- sleep, conditions, errors with tracebacks, and nothing left running.
local sched = require "chorus.sched"
local native = require "chorus.native"

describe("chorus.sched", function()
  it("spawns a child and joins its results", function()
    local t = sched.spawn(function(a, b) return a + b, "x" end, 2, 3)
    assert.same({ true, 5, "x" }, { t:join() })
  end)

  it("runs children concurrently (two 300 ms sleeps take ~300 ms)", function()
    local t0 = sched.now()
    local a = sched.spawn(function() return sched.sleep(300) end)
    local b = sched.spawn(function() return sched.sleep(300) end)
    assert.is_true(sched.wait_all({ a, b }))
    local took = sched.now() - t0
    assert.is_true(took >= 299 and took < 550, "took " .. took) -- one after the other: 600
  end)

  it("wait_any returns the first task done", function()
    local slow = sched.spawn(function() sched.sleep(200) return "slow" end)
    local fast = sched.spawn(function() sched.sleep(5) return "fast" end)
    local i, t = sched.wait_any({ slow, fast })
    assert.equal(2, i)
    assert.same({ true, "fast" }, { t:join() })
    slow:cancel()
    assert.same({ nil, "cancelled" }, { slow:join() })
  end)

  it("cancel aborts a sleeping task at once", function()
    local t0 = sched.now()
    local seen
    local t = sched.spawn(function() seen = { sched.sleep(10000) } end)
    sched.sleep(5)
    t:cancel()
    assert.same({ nil, "cancelled" }, { t:join() })
    assert.same({ nil, "cancelled" }, seen)
    assert.is_true(sched.now() - t0 < 100)
  end)

  -- defer(): bookkeeping that must not hold up I/O (a step ending after
  -- a streamed answer) waits until the loop has polled, one a turn.
  it("defer resumes tasks in turn, after the ones already ready, and a cancel takes one back", function()
    local order = {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = sched.spawn(function()
        local ok, why = sched.defer()
        order[#order + 1] = ok and i or (i .. ":" .. tostring(why))
      end)
    end
    -- Ready tasks run before any deferred one.
    local ready = sched.spawn(function() order[#order + 1] = "ready" end)
    sched.sleep(0)
    tasks[2]:cancel()
    assert.is_true(sched.wait_all({ tasks[1], tasks[2], tasks[3], ready }))
    assert.same({ "ready", "2:cancelled", 1, 3 }, order)
    -- Already cancelled: it says so at once.
    local seen
    local t = sched.spawn(function()
      sched.current():cancel()
      seen = { sched.defer() }
    end)
    t:join()
    assert.same({ nil, "cancelled" }, seen)
  end)

  it("a deadline delivers timeout within 10 ms", function()
    local seen
    local t0 = sched.now()
    local t = sched.spawn_with({ timeout_ms = 50 }, function()
      seen = { sched.sleep(10000) }
      return "ignored"
    end)
    assert.same({ nil, "timeout" }, { t:join() })
    local took = sched.now() - t0
    assert.same({ nil, "timeout" }, seen)
    assert.is_true(took >= 49 and took < 2000, "took " .. took) -- the 10 s sleep was cut
  end)

  it("a task that never waits is not interrupted by its deadline", function()
    local t = sched.spawn_with({ timeout_ms = 1000 }, function() return 1 end)
    assert.same({ true, 1 }, { t:join() })
  end)

  it("cancelling a parent cancels its children", function()
    local child
    local parent = sched.spawn(function()
      child = sched.spawn(function() return sched.sleep(10000) end)
      return child:join()
    end)
    sched.sleep(5)
    parent:cancel()
    assert.same({ nil, "cancelled" }, { parent:join() })
    assert.same({ nil, "cancelled" }, { child:join() })
  end)

  it("a body that returns cancels its still-running children", function()
    local child
    local parent = sched.spawn(function()
      child = sched.spawn(function() return sched.sleep(10000) end)
      sched.sleep(1)
      return "done"
    end)
    assert.same({ true, "done" }, { parent:join() })
    assert.equal("done", child:status())
    assert.equal("cancelled", child:outcome())
  end)

  it("an error in a task is returned with its traceback", function()
    local t = sched.spawn(function() error("boom") end)
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.matches("boom", err)
    assert.matches("stack traceback", err)
    assert.equal("error", t:outcome())
  end)

  it("a non-string error value is kept as is", function()
    local t = sched.spawn(function() error({ code = 7 }) end)
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.same({ code = 7 }, err)
  end)

  it("a bare coroutine.yield in a task fails the task, not the process", function()
    local t = sched.spawn(function() coroutine.yield() end)
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.matches("coroutine.yield", err)
  end)

  it("waiting functions refuse to run outside a task", function()
    local co = coroutine.create(function() return sched.sleep(1) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("must be called from a chorus task", err)
  end)

  it("sleep(0) lets other tasks run", function()
    local order = {}
    local a = sched.spawn(function() order[#order + 1] = "a1"; sched.sleep(0); order[#order + 1] = "a2" end)
    local b = sched.spawn(function() order[#order + 1] = "b" end)
    sched.wait_all({ a, b })
    assert.same({ "a1", "b", "a2" }, order)
  end)

  it("a long ready queue does not starve timers (tasks run in fair batches)", function()
    -- 5,000 tasks that yield 40 times each keep the queue full for a long
    -- time; a 5 ms sleep must end long before they do.
    local busy, left = {}, 5000
    for i = 1, 5000 do
      busy[i] = sched.spawn(function()
        for _ = 1, 40 do sched.sleep(0) end
        left = left - 1
      end)
    end
    local left_at_wake
    local sleeper = sched.spawn(function() sched.sleep(5) left_at_wake = left end)
    sched.wait_all(busy)
    sleeper:join()
    assert.is_true(left_at_wake > 2500, "the timer fired only once " .. (5000 - left_at_wake) .. " tasks were done")
  end)

  -- chorus.clock: the engine's clocks through LuaJIT's FFI (compiled into
  -- traces), the same clocks as native.now and native.time.
  it("reads the same clocks as native, through the FFI in this binary", function()
    local clock = require "chorus.clock"
    assert.is_true(clock.ffi, "the chorus binary exports chorus_clock_*: ENABLE_EXPORTS")
    assert.equal(clock.now, sched.now)
    assert.equal(clock.time, sched.time)
    local last = sched.now()
    for _ = 1, 100000 do -- compiled after a few iterations: both ways
      local t = sched.now()
      assert(t >= last, "monotonic")
      last = t
    end
    -- the same clocks, read one after the other (a loaded machine may
    -- preempt between the two reads: a wide margin, the clocks' units)
    assert.is_true(math.abs(sched.now() - native.now()) < 500)
    assert.is_true(math.abs(sched.time() - native.time()) < 0.5)
    assert.is_true(math.abs(sched.time() - os.time()) <= 1)
    local t0, w0 = sched.now(), sched.time()
    sched.sleep(30)
    local dn, dw = sched.now() - t0, (sched.time() - w0) * 1000
    assert.is_true(dn >= 29 and dn < 500, dn)
    assert.is_true(dw >= 25 and dw < 500, dw)
  end)

  it("a condition wakes every waiter with the signalled values", function()
    local c = sched.cond()
    local got = {}
    local ts = {}
    for i = 1, 3 do
      ts[i] = sched.spawn(function() got[i] = { c:wait() } end)
    end
    sched.sleep(1)
    assert.is_true(c:has_waiters())
    c:signal("go", 2)
    sched.wait_all(ts)
    assert.same({ { "go", 2 }, { "go", 2 }, { "go", 2 } }, got)
  end)

  it("a cancelled condition waiter leaves the waiter list", function()
    local c = sched.cond()
    local t = sched.spawn(function() return c:wait() end)
    sched.sleep(1)
    t:cancel()
    assert.same({ nil, "cancelled" }, { t:join() })
    assert.is_false(c:has_waiters())
  end)

  it("task:wake only wakes a suspended task", function()
    local t = sched.spawn(function() return sched.sleep(5) end)
    sched.sleep(1)
    assert.is_false(t:wake("x"))
    t:join()
  end)

  it("run_limited never runs more than the limit at once", function()
    local running, peak = 0, 0
    local fns = {}
    for i = 1, 10 do
      fns[i] = function()
        running = running + 1
        if running > peak then peak = running end
        sched.sleep(2)
        running = running - 1
        return i
      end
    end
    local tasks = sched.run_limited(fns, 3)
    assert.equal(3, peak)
    for i = 1, 10 do assert.same({ true, i }, { tasks[i]:join() }) end
  end)

  it("with_deadline: fn's waits time out, its children are cancelled, the task goes on", function()
    local child
    local t0 = sched.now()
    local ok, why = sched.with_deadline(30, function()
      child = sched.spawn(function() return sched.sleep(5000) end)
      local slept, err = sched.sleep(5000)
      assert.is_nil(slept)
      assert.equal("timeout", err)
      assert.equal("timeout", sched.cancelled())
      assert.same({ nil, "timeout" }, { sched.sleep(1) }) -- fails fast after the deadline
      return "ignored"
    end)
    assert.is_nil(ok)
    assert.equal("timeout", why)
    local took = sched.now() - t0
    assert.is_true(took >= 29 and took < 2000, "took " .. took) -- cut at the deadline
    assert.same({ nil, "timeout" }, { child:join() })
    assert.is_nil(sched.cancelled())
    assert.is_true(sched.sleep(1)) -- the task itself goes on
  end)

  it("with_deadline returns results, errors with a traceback, and nests through a task", function()
    assert.same({ true, 1, 2 }, { sched.with_deadline(100, function(a, b) sched.sleep(1) return a, b end, 1, 2) })
    local ok, err = sched.with_deadline(100, function() error("boom") end)
    assert.is_nil(ok)
    assert.matches("boom", err)
    assert.matches("stack traceback", err)
    local r = { sched.with_deadline(100, function()
      return sched.with_deadline(10, function() return sched.sleep(1000) end)
    end) }
    assert.same({ true, nil, "timeout" }, r)
  end)

  it("with_deadline inside a cancelled task reports cancelled", function()
    local t = sched.spawn(function()
      return sched.with_deadline(1000, function() return sched.sleep(1000) end)
    end)
    sched.sleep(5)
    t:cancel()
    local ok, a, b = t:join()
    assert.is_nil(ok)
    assert.equal("cancelled", a)
    assert.is_nil(b)
  end)

  it("reuses the coroutine of a task whose body returned, keeping its results and nothing else", function()
    local running = coroutine.running
    local t1 = sched.spawn(function(a) return running(), a, "one" end, 1)
    local _, co1 = t1:join()
    local t2 = sched.spawn(function() return running() end)
    local _, co2 = t2:join()
    assert.equal(co1, co2)
    -- t1's results were taken off the coroutine before it ran t2.
    assert.same({ true, co1, 1, "one" }, { t1:result() })
    -- Nothing of a finished task stays reachable from its pooled coroutine.
    local seen = setmetatable({}, { __mode = "k" })
    local arg = {}
    seen[arg] = true
    sched.spawn(function(a) return #a end, arg):join()
    arg = nil -- luacheck: ignore 311 (the only reference goes: the collector may take it)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(seen), "the last task's argument is still reachable")
  end)

  it("does not reuse the coroutine of a task that failed", function()
    local running = coroutine.running
    local co_failed
    local t = sched.spawn(function() co_failed = running(); error("boom") end)
    assert.is_nil((t:join()))
    local _, co = sched.spawn(function() return running() end):join()
    assert.not_equal(co_failed, co)
    assert.equal("dead", coroutine.status(co_failed))
  end)

  it("leaves no task running", function()
    local before = sched.live_tasks()
    local ts = {}
    for i = 1, 100 do ts[i] = sched.spawn(function() sched.sleep(i % 3) end) end
    sched.wait_all(ts)
    assert.equal(before, sched.live_tasks())
  end)

  it("exposes hashes, ids and clocks", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", native.sha256("abc"))
    -- One context serves every call: nothing of one digest reaches the next.
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      native.sha256(string.rep("a", 1000000)))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", native.sha256(""))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", native.sha256("abc"))
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", native.uuid())
    assert.is_true(native.time() > 1.7e9)
    assert.is_number(native.rss())
  end)
end)
