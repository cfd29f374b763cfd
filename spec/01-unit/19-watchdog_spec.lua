-- Runaway scripts: a CPU budget per resume (CHORUS_CPU_BUDGET_MS, default
-- 200 ms) interrupts script code that never yields; a heap ceiling
-- (CHORUS_HEAP_LIMIT_MB) turns a memory bomb into a failed step; --sandbox
-- loads overlay scripts without os, io, ffi, debug.
local h = require "spec.helpers"
local native = require "chorus.native"
local sched = require "chorus.sched"
local registry = require "chorus.engine.registry"

local function scripts(files)
  local dir = h.tmpdir()
  assert(os.execute("mkdir -p " .. dir .. "/strategies") == 0)
  for rel, src in pairs(files) do h.write(dir .. "/" .. rel, src) end
  return dir
end

local function engine_with(files)
  return h.engine({ scripts = { scripts(files) } })
end

describe("watchdog", function()
  it("interrupts an agent that never yields; its timeout alone could not", function()
    local engine = engine_with({ ["agents/spin.lua"] = [[
      return { name = "spin", call = function() local n = 0 while true do n = n + 1 end end }]] })
    local t0 = sched.now()
    local exec = h.run(h.flat("parallel", {
      { id = "spin", agent = "spin", timeout_ms = 60000, on_failure = "continue" },
      { id = "other", agent = "delay", params = { ms = 10, output = "fine" } },
    }), {}, { engine = engine })
    local took = sched.now() - t0
    assert.equal("failed", exec:run_of("spin").status)
    assert.matches("cpu budget exceeded %(200 ms%)", exec:run_of("spin").error)
    assert.equal("completed", exec:run_of("other").status)
    assert.is_true(took >= 190 and took < 1500, "took " .. took .. " ms")
    assert.is_true(native.watchdog_stats().cpu_interrupts >= 1)
  end)

  it("still ends a script that catches the interruption and loops again", function()
    local engine = engine_with({ ["agents/stubborn.lua"] = [[
      return { name = "stubborn", call = function()
        while true do pcall(function() while true do end end) end
      end }]] })
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "stubborn" } }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.matches("cpu budget exceeded", exec:run_of("s").error)
  end)

  it("covers code a script loads at run time", function()
    local engine = engine_with({ ["agents/loader.lua"] = [[
      return { name = "loader", call = function()
        local f = loadstring("while true do end")
        f()
      end }]] })
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "loader" } }), {}, { engine = engine })
    assert.matches("cpu budget exceeded", exec:run_of("s").error)
  end)

  it("interrupts a strategy that never yields: the execution fails, the process goes on", function()
    local engine = engine_with({ ["strategies/stuck.lua"] = [[
      return { name = "stuck", run = function() while true do end end }]] })
    local exec = h.run(h.flat("stuck", { { id = "s", agent = "echo" } }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.matches("cpu budget exceeded", exec.error)
    assert.equal("skipped", exec:run_of("s").status)
  end)

  it("does not charge a strategy for the engine's work between agents that never yield", function()
    -- 30 steps of 700 KB outputs: the engine's checks and events for them
    -- run in the strategy's resume (no agent yields), far past a 20 ms
    -- budget together; each agent call alone takes well under it.
    local engine = engine_with({ ["agents/big.lua"] = [[
      return { name = "big", call = function(input) return { n = input.n, text = ("b"):rep(700 * 1024) } end }]] })
    local steps = {}
    for i = 1, 30 do steps[i] = { id = "b" .. i, agent = "big", params = {} } end
    native.watchdog_config({ cpu_budget_ms = 20 })
    local ok, exec = pcall(h.run, h.flat("sequential", steps, { max_execution_bytes = 64 * 1048576 }), { n = 1 },
      { engine = engine })
    native.watchdog_config({ cpu_budget_ms = 200 })
    assert(ok, exec)
    for i = 1, 30 do
      local sr = exec:run_of("b" .. i)
      assert.equal("b" .. i .. " completed", "b" .. i .. " " .. sr.status .. (sr.error and (": " .. sr.error) or ""))
    end
    assert.equal("completed", exec.status)
  end)

  it("tells script code past a quarter of its budget that a yield is due, and framework code never", function()
    assert.is_false(sched.yield_due())
    assert.is_false(native.resume_long())
    local engine = engine_with({ ["agents/busy.lua"] = [[
      local sched = require "chorus.sched"
      return { name = "busy", call = function()
        local t0 = sched.now()
        while not sched.yield_due() and sched.now() - t0 < 5000 do end
        return { due = sched.yield_due(), native = require("chorus.native").resume_long(), ms = sched.now() - t0 }
      end }]] })
    local exec = h.run(h.flat("sequential", { { id = "b", agent = "busy" } }), {}, { engine = engine })
    local out = exec:run_of("b").output
    assert.is_true(out.due, "not due after " .. out.ms .. " ms")
    assert.is_true(out.native)
    assert.is_true(out.ms >= 45, out.ms .. " ms") -- a quarter of 200 ms, to the watchdog's tick
  end)

  it("leaves framework code alone, however long it runs", function()
    local t0 = sched.now()
    local n = 0
    while sched.now() - t0 < 300 do n = n + 1 end -- this spec is not script code
    assert.is_true(n > 0)
  end)

  describe("the process", function()
    local bomb = [[
      return { name = "bomb", call = function()
        local t = {}
        for i = 1, 1e9 do t[i] = ("x"):rep(1048576) .. i end
      end }]]
    local spin = [[return { name = "spin", call = function() while true do end end }]]
    local function run_cli(env, files, steps)
      local dir = scripts(files)
      local cfg = dir .. "/cfg.json"
      h.write(cfg, require("chorus.json").encode(h.flat("sequential", steps)))
      return h.sh(("%s %s run %s --scripts %s --json -q"):format(env, h.binary, cfg, dir))
    end

    -- One agent under a heap limit and no CPU budget: the run exits 1 and
    -- the step failed; returns the step's error.
    local function heap_failure(limit_mb, name, src)
      local code, out, err = run_cli("CHORUS_CPU_BUDGET_MS=0 CHORUS_HEAP_LIMIT_MB=" .. limit_mb,
        { ["agents/" .. name .. ".lua"] = src }, { { id = "s", agent = name, timeout_ms = 60000 } })
      assert.equal(1, code, err)
      local rec = require("chorus.json").decode(out)
      assert.equal("failed", rec.steps[1].status)
      return rec.steps[1].error
    end

    it("a memory bomb fails its step under CHORUS_HEAP_LIMIT_MB instead of taking the machine", function()
      -- interrupted by the watchdog, or by the allocator past 1.5 times the limit
      local e = heap_failure(128, "bomb", bomb)
      assert.is_truthy(e:match("memory limit exceeded") or e:match("not enough memory"), e)
    end)

    it("a heap grown in small pieces is seen too: the step fails, not the process", function()
      local e = heap_failure(64, "small", [[
        return { name = "small", call = function()
          local t = {}
          for i = 1, 1e9 do t[i] = { i, tostring(i) } end
        end }]])
      assert.is_truthy(e:match("memory limit exceeded") or e:match("not enough memory"), e)
    end)

    it("one block past 1.5 times the limit is refused at once, whatever the machine has", function()
      assert.matches("not enough memory", heap_failure(64, "huge",
        [[return { name = "huge", call = function() return #("x"):rep(1536 * 1048576) end }]]))
    end)

    -- The encoder's buffer (runtime/rt_lua_json.c) grows while it
    -- encodes; a document whose text the heap cannot take is refused
    -- when it becomes a Lua string, past that growth. The encodes after
    -- it must still be right (not write into the block growth freed:
    -- the ASan build checks that too).
    it("an encode refused for memory leaves the JSON encoder whole", function()
      local code, out, err = run_cli("CHORUS_CPU_BUDGET_MS=0 CHORUS_HEAP_LIMIT_MB=64", { ["agents/enc.lua"] = [[
        local json = require "chorus.json"
        return { name = "enc", call = function()
          local big = {}
          for i = 1, 50 do big[i] = ("x"):rep(1048576) .. i end -- 50 MB, in pieces
          local ok, e = pcall(json.encode, big)
          big = nil
          collectgarbage()
          local out = {}
          for i = 1, 200 do out[i] = json.encode({ i = i, s = ("y"):rep(i * 50) }) end
          return { first = ok and "encoded" or tostring(e), n = #out, last = out[200] }
        end }]] }, { { id = "s", agent = "enc", timeout_ms = 60000 } })
      assert.equal(0, code, err)
      local step = require("chorus.json").decode(out).steps[1]
      assert.equal("completed", step.status, step.error)
      assert.matches("not enough memory", step.output.first)
      assert.equal(200, step.output.n)
      assert.same({ i = 200, s = ("y"):rep(10000) }, require("chorus.json").decode(step.output.last))
    end)

    it("CHORUS_CPU_BUDGET_MS sets the budget; a bad value is refused at start", function()
      local code, out = run_cli("CHORUS_CPU_BUDGET_MS=50", { ["agents/spin.lua"] = spin },
        { { id = "s", agent = "spin" } })
      assert.equal(1, code)
      assert.matches("cpu budget exceeded %(50 ms%)", out)
      local bad, _, err = h.sh("CHORUS_CPU_BUDGET_MS=soon " .. h.binary .. " version")
      assert.equal(2, bad)
      assert.matches("CHORUS_CPU_BUDGET_MS must be a whole number", err)
    end)
  end)

  describe("--sandbox", function()
    local function load_with(src)
      local dir = scripts({ ["agents/probe.lua"] = src })
      local reg = registry.new({ dirs = { native.home, dir }, sandbox = true })
      local snap, errors = reg:load()
      return snap, errors
    end

    it("an overlay script sees no os, io, ffi, debug, jit or package", function()
      local snap, errors = load_with([[
        local seen = {}
        for _, k in ipairs({ "os", "io", "debug", "jit", "package", "getfenv", "setfenv", "loadfile", "dofile" }) do
          if _G[k] ~= nil then seen[#seen + 1] = k end
        end
        local ok = pcall(require, "ffi")
        return { name = "probe", seen = seen, ffi = ok, call = function() return "ok" end }]])
      assert.same({}, errors)
      local mod = snap.agents.probe.module
      assert.same({}, mod.seen)
      assert.is_false(mod.ffi)
      assert.is_table(snap.agents.echo) -- the built-ins load as they are
    end)

    it("an overlay script may require the public scripting modules, and is told what it may not", function()
      local _, errors = load_with([[
        local json = require "chorus.json"
        local sched = require "chorus.sched"
        require "chorus.native"
        return { name = "probe", call = function() end }]])
      assert.equal(1, #errors)
      assert.matches("module 'chorus.native' is not available to scripts in %-%-sandbox", errors[1].message)
    end)
  end)
end)
