-- What one execution may hold (chorus.engine.limits): outputs carried once,
-- size and depth limits enforced where values enter an execution, text
-- the stores would refuse repaired, and reads that answer even a record
-- that cannot be encoded whole.
local h = require "spec.helpers"
local json = require "chorus.json"
local sched = require "chorus.sched"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local api = require "chorus.api"
local auth = require "chorus.api.auth"

local function chain(n)
  local steps = {}
  for i = 1, n do
    steps[i] = { id = "s" .. i, agent = "echo", dependencies = i > 1 and { "s" .. (i - 1) } or nil,
      output_key = "out" .. i }
  end
  return steps
end

-- every step depends on all the ones before it
local function fan_in(n)
  local steps = {}
  for i = 1, n do
    local deps = {}
    for j = 1, i - 1 do deps[j] = "s" .. j end
    steps[i] = { id = "s" .. i, agent = "echo", dependencies = deps }
  end
  return steps
end

local function engine_with(agents)
  local dir = h.tmpdir()
  for name, body in pairs(agents) do
    h.write(("%s/agents/%s.lua"):format(dir, name), ("return { name = %q, call = %s }"):format(name, body))
  end
  return h.engine({ scripts = { dir } })
end

local function record_bytes(exec)
  return #assert(json.encode(exec:record()))
end

describe("limits", function()
  it("a dependency's output is carried once, and still readable as dep_<id>", function()
    local exec = h.run(h.flat("parallel", {
      { id = "a", agent = "echo", params = { output = { v = 1 } }, output_key = "first" },
      { id = "b", agent = "echo", dependencies = { "a" } },
    }), { job = "J1" })
    local out = exec:run_of("b").output
    assert.same({ v = 1 }, out.first)
    assert.same({ v = 1 }, out.dep_a) -- the alias
    assert.is_nil(rawget(out, "dep_a"))
    assert.same({ first = { v = 1 }, job = "J1" }, json.decode(json.encode(out)))
  end)

  it("a 22-step pass-through chain keeps a small record (it was 145 MB)", function()
    local t0 = sched.now()
    local exec = h.run(h.flat("sequential", chain(22)), { job = "J" })
    assert.equal("completed", exec.status)
    assert.is_true(record_bytes(exec) < 64 * 1024, "record of " .. record_bytes(exec) .. " bytes")
    assert.is_true(sched.now() - t0 < 2000)
  end)

  it("a 300-step pass-through chain ends, failing where its output nests too deep", function()
    local t0 = sched.now()
    local exec = h.run(h.flat("sequential", chain(300)), {})
    assert.equal("failed", exec.status)
    local sr = exec:run_of("s101")
    assert.equal("failed", sr.status)
    assert.matches("output nested deeper than 100 levels", sr.error)
    assert.equal("completed", exec:run_of("s100").status)
    assert.is_string(json.encode(exec:record())) -- and the record reads back
    assert.is_true(sched.now() - t0 < 5000, "took " .. (sched.now() - t0) .. " ms")
  end)

  it("a fan-in DAG whose outputs double at every step fails at the execution limit, at once", function()
    local t0 = sched.now()
    local exec = h.run(h.flat("parallel", fan_in(26), { parallel_limit = 1 }), { pad = ("x"):rep(100) })
    assert.equal("failed", exec.status)
    local failed_at
    for _, sr in ipairs(exec.steps) do
      if sr.status == "failed" then failed_at = sr end
    end
    assert.matches("settings.max_", failed_at.error)
    assert.is_true(record_bytes(exec) <= 17 * 1048576)
    assert.is_true(sched.now() - t0 < 5000, "took " .. (sched.now() - t0) .. " ms")
  end)

  -- native.value_check's table of checked values (limits.check passes
  -- one): a large value met again counts without a walk, with the same
  -- figures; small ones are not remembered (walking them again is cheaper).
  it("remembers large checked values, not small ones, and counts them the same", function()
    local value_check = require("chorus.native").value_check
    local seen = setmetatable({}, { __mode = "k" })
    local small = { a = "x", b = { 1, 2, 3 } }
    local big = { blob = ("y"):rep(5000), list = { 1, 2, { deep = true } } }
    local n_small = value_check(small, math.huge, 100, seen)
    assert.is_nil(seen[small])
    local n_big = value_check(big, math.huge, 100, seen)
    assert.is_number(seen[big])
    local outer = { one = big, two = big, small = small }
    local with = value_check(outer, math.huge, 100, seen)
    assert.equal(value_check(outer, math.huge, 100), with)
    assert.is_true(with >= 2 * n_big + n_small)
    -- nesting is remembered too: too deep still fails, and says where
    local _, kind, msg = value_check({ { { big } } }, math.huge, 4, seen)
    assert.equal("too_deep", kind)
    assert.matches("nested deeper than 4 levels", msg)
    -- a byte budget still stops at a remembered value
    local _, k2 = value_check(outer, 2 * n_big, 100, seen)
    assert.equal("too_large", k2)
  end)

  -- limits.check sizes small values in Lua (limits._small_bytes) and
  -- leaves the rest to native.value_check: both must give the same
  -- figures and the same verdicts, whichever answers.
  it("sizes small values in Lua exactly as native.value_check does, and gives up on the rest", function()
    local limits = require "chorus.engine.limits"
    local value_check = require("chorus.native").value_check
    local small = limits._small_bytes
    local seed = 20261203
    local function rnd(n) -- a fixed sequence: a failure is the same failure again
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local texts = { "", "JOB_1", "a b", "tab\t", ("k"):rep(70), "caf\195\169", "nul\0byte", "bad\255", "\127" }
    local numbers = { 0, 1, -1, 9, -9, 10, -10, 12345, -99999, 1e14, 1e15, -1e15, 0.5, -2.25, 1 / 3, 2 ^ 53,
      0 / 0, math.huge, -math.huge }
    local function value(depth)
      local r = rnd(depth > 5 and 6 or 9)
      if r == 1 then return texts[rnd(#texts)] end
      if r == 2 then return numbers[rnd(#numbers)] end
      if r == 3 then return rnd(2) == 1 end
      if r == 4 then return json.null end
      if r == 5 then return rnd(20) == 1 and print or texts[rnd(#texts)] end
      if r == 6 then return numbers[rnd(#numbers)] end
      local t = {}
      for i = 1, rnd(5) do
        local k = rnd(3) == 1 and i or texts[rnd(#texts)] .. i
        t[k] = value(depth + 1)
      end
      if rnd(30) == 1 then t[math.huge] = 1 end
      return t
    end
    local gave_up, answered = 0, 0
    for _ = 1, 3000 do
      local v = value(0)
      local max = rnd(4) == 1 and rnd(200) or 1048576
      local want_bytes, want_kind = value_check(v, max, limits.MAX_DEPTH)
      local got_v, got_bytes, got_kind = limits.check(v, max)
      if want_bytes then
        assert.is_not_nil(got_v)
        assert.equal(want_bytes, got_bytes)
        assert.equal(want_kind > 0, got_kind) -- repaired when C found bad text
      else
        assert.is_nil(got_v)
        assert.equal(want_kind, got_bytes)
      end
      local n = small(v, 0, 0, max)
      if n then
        answered = answered + 1
        assert.equal(want_bytes, n)
      else
        gave_up = gave_up + 1
      end
    end
    assert.is_true(answered > 500 and gave_up > 500, answered .. " answered, " .. gave_up .. " gave up")
    -- deep, cyclic, and large values go to the C walk
    local deep = {}
    for _ = 1, 20 do deep = { deep } end
    assert.is_nil(small(deep, 0, 0, 4095))
    local cyc = {}
    cyc.self = cyc
    assert.is_nil(small(cyc, 0, 0, 4095))
    assert.equal("too_deep", select(2, limits.check(cyc, 1048576)))
    assert.is_nil(small({ blob = ("x"):rep(5000) }, 0, 0, 4095))
    -- the step output of the reference workload is answered in Lua
    assert.is_number(small({ job_name = "JOB_1", job_status = { job_name = "JOB_1" } }, 0, 0, 4095))
    -- Text longer than 64 bytes is scanned in C a word at a time: a NUL
    -- or a byte over 127 anywhere in it, at every offset of a word, is
    -- seen, and plain text is sized as the C walk sizes it.
    for len = 60, 140, 7 do
      local text = ("abcdefgh"):rep(20):sub(1, len)
      assert.equal(value_check(text, 4095, limits.MAX_DEPTH), small(text, 0, 0, 4095))
      for at = 1, len do
        for _, b in ipairs({ "\0", "\128", "\255" }) do
          local bad = text:sub(1, at - 1) .. b .. text:sub(at + 1)
          assert.is_nil(small(bad, 0, 0, 4095), ("byte %q at %d of %d"):format(b, at, len))
        end
      end
    end
  end)

  it("an output over max_output_bytes fails its step (no retry); a config may raise the limit", function()
    local engine = engine_with({ big = 'function(_, ctx) return ("y"):rep(ctx.params.n or 2 * 1048576) end' })
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "big", retry = { max_attempts = 3 } } }), {},
      { engine = engine })
    local sr = exec:run_of("s")
    assert.equal("failed", sr.status)
    assert.equal(1, sr.attempts)
    assert.equal("output is larger than 1 MiB (settings.max_output_bytes)", sr.error)
    assert.is_nil(sr.output)
    exec = h.run(h.flat("sequential", { { id = "s", agent = "big" } }, { max_output_bytes = 4 * 1048576 }), {},
      { engine = engine })
    assert.equal("completed", exec.status)
  end)

  it("outputs that together pass max_execution_bytes fail the step that would pass it", function()
    local engine = engine_with({ chunk = 'function() return ("z"):rep(900 * 1024) end' })
    local steps = {}
    for i = 1, 20 do steps[i] = { id = "c" .. i, agent = "chunk" } end
    local exec = h.run(h.flat("sequential", steps), {}, { engine = engine })
    assert.equal("failed", exec.status)
    for i = 1, 18 do
      local sr = exec:run_of("c" .. i)
      assert.equal("c" .. i .. " completed", "c" .. i .. " " .. sr.status .. (sr.error and (": " .. sr.error) or ""))
    end
    assert.matches("would take the execution over 16 MiB %(settings.max_execution_bytes%)", exec:run_of("c19").error)
    assert.equal("skipped", exec:run_of("c20").status)
  end)

  it("text with NUL or malformed UTF-8 is repaired before anything stores it", function()
    local engine = engine_with({ bytes = 'function() return { text = "a\\0b\\255c", ["k\\254"] = 1 } end' })
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "bytes" } }), {}, { engine = engine })
    assert.equal("completed", exec.status)
    local out = exec:run_of("s").output
    assert.equal("a\239\191\189b\239\191\189c", out.text)
    assert.equal(1, out["k\239\191\189"])
    assert.is_true(require("chorus.native").utf8_valid(json.encode(exec:record())))
  end)

  it("an output JSON cannot carry fails its step and says where", function()
    local engine = engine_with({ fn = 'function() return { ok = true, cb = { function() end } } end' })
    local exec = h.run(h.flat("sequential", { { id = "s", agent = "fn" } }), {}, { engine = engine })
    assert.equal("failed", exec.status)
    assert.equal("output holds function, which JSON cannot carry (at cb[0])", exec:run_of("s").error)
  end)

  describe("at the door", function()
    local function deep(n)
      local v = "leaf"
      for _ = 1, n do v = { a = v } end
      return v
    end

    it("the runner refuses an input over max_input_bytes or nested too deep", function()
      local engine = h.engine()
      local runner = runner_mod.new({ engine = engine })
      local cfg = assert(engine:validate(h.flat("sequential", { { id = "s", agent = "echo" } },
        { max_input_bytes = 2048 })))
      local r, err, code = runner:submit(cfg, { blob = ("x"):rep(4096) })
      assert.is_nil(r)
      assert.equal("invalid_input", code)
      assert.equal("the input is larger than 2 KiB (settings.max_input_bytes)", err)
      r, err, code = runner:submit(cfg, deep(126))
      assert.is_nil(r)
      assert.equal("invalid_input", code)
      assert.matches("^the input nested deeper than 100 levels", err)
      assert.is_table(runner:submit(cfg, deep(90)))
    end)

    it("a config whose metadata nests too deep to be listed again is refused", function()
      local engine = h.engine()
      local doc = h.flat("sequential", { { id = "s", agent = "echo" } })
      doc.metadata = deep(126)
      local cfg, errs = engine:validate(doc)
      assert.is_nil(cfg)
      assert.matches("^the config nested deeper than 104 levels", errs[1].message)
    end)

    it("the limits are settings with bounds", function()
      local engine = h.engine()
      local _, errs = engine:validate(h.flat("sequential", { { id = "s", agent = "echo" } },
        { max_output_bytes = 1e12 }))
      assert.equal("settings.max_output_bytes", errs[1].path)
    end)
  end)

  describe("reads", function()
    local svc, key
    before_each(function()
      local store = memory.new()
      local engine = h.engine({ store = store })
      svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
        auth = auth.new({ store = store, ttl_ms = 0 }) }
      svc.app = api.new(svc)
      local k
      key, k = auth.generate()
      store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t", user_id = "u", role = "admin" })
    end)

    local function get(path)
      local p, q = path:match("^([^?]*)%??(.*)$")
      local status, _, body = svc.app:handle({ method = "GET", path = p, query = q,
        headers = { authorization = "Bearer " .. key }, body = "" })
      return status, json.decode(body)
    end

    it("a config stored before the limits does not break the list of the others", function()
      local good = assert(svc.engine:validate(h.flat("sequential", { { id = "s", agent = "echo" } })))
      good.name = "good"
      assert(svc.store:create_config(good, { tenant_id = "t", user_id = "u" }))
      local bad = assert(svc.engine:validate(h.flat("sequential", { { id = "s", agent = "echo" } })))
      bad.name = "bad"
      local v = "leaf"
      for _ = 1, 126 do v = { a = v } end
      bad.metadata = v -- as an older version would have let in
      assert(svc.store:create_config(bad, { tenant_id = "t", user_id = "u" }))
      local status, body = get("/api/v1/orchestrations/configs")
      assert.equal(200, status)
      assert.equal(2, #body.items)
      local by = {}
      for _, c in ipairs(body.items) do by[c.name] = c end
      assert.equal("sequential", by.good.strategy)
      assert.equal("sequential", by.bad.strategy)
      assert.is_string(by.bad.metadata._unencodable)
    end)
  end)
end)
