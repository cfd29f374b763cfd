-- The LuaJIT we link must not miscompile what Chorus leans on: pairs()
-- loops (LuaJIT #827: a loop whose trace gets blacklisted and patched to
-- ITERC was cut short, 60,080 of 100,000 times on Debian's 2022 upstream
-- snapshot), and through them the JSON encoders behind the registry API
-- and the consensus votes. Each check runs hot enough for traces to be
-- recorded, blacklisted and patched, and compares with the interpreter.
local json = require "chorus.json"
local native = require "chorus.native"
local registry = require "chorus.engine.registry"
local votes = require "chorus.votes"

-- jit_off(fn): fn's result with the JIT off for the whole state.
local function jit_off(fn)
  jit.off()
  jit.flush()
  local ok, r = pcall(fn)
  jit.on()
  jit.flush()
  assert(ok, r)
  return r
end

describe("LuaJIT", function()
  it("is OpenResty's luajit2 branch, headers and library", function()
    assert.equal("OpenResty luajit2", native.luajit_branch)
    assert.is_true(pcall(require, "table.isempty")) -- the library loaded, too
  end)

  it("does not cut a pairs() loop short once its trace is blacklisted (LuaJIT #827)", function()
    -- Run as a chunk of its own, as in the upstream report: a vararg call
    -- with a loop of its own sends the outer loop back to the interpreter
    -- on every round, which gets its trace blacklisted and patched.
    local chunk = assert(loadstring([[
      local inner = { 10, 20, 30, 40, 50 }
      local outer = { a = inner, b = inner, c = inner, d = inner, e = inner }
      local function bounce(...) for _ = 1, 100 do end end
      local short = 0
      for _ = 1, 100000 do
        bounce()
        local seen = 0
        for _, v in pairs(outer) do
          for _ in pairs(v) do end
          seen = seen + 1
        end
        if seen ~= 5 then short = short + 1 end
      end
      return short
    ]], "=luajit_827"))
    jit.flush()
    assert.equal(0, chunk())
  end)

  it("encodes large registry and vote tables the same with the JIT on as with it off", function()
    -- A registry answer of many agents, each with its fields.
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/agents") == 0)
    for i = 1, 60 do
      local f = assert(io.open(("%s/agents/a%02d.lua"):format(dir, i), "wb"))
      f:write(("return { name = 'a%02d', version = '%d.0', description = 'agent %d', call = function() return %d end }")
        :format(i, i, i, i))
      f:close()
    end
    local reg = registry.new({ dirs = { native.home, dir } })
    reg:load()
    local listing = reg:list()
    -- Votes: outputs that are tables with fields, counted by canonical JSON.
    local results = {}
    for i = 1, 40 do
      results[i] = { step_id = "s" .. i, ok = true, weight = 1,
        output = { verdict = (i % 3 == 0) and "restart" or "rerun", rc = i % 3, tags = { "db", "payroll" },
          detail = { job = "PAYROLL", n = i % 2 } } }
    end
    local function encode_all()
      -- cjson for the API's answer, the Lua encoder for canonical text
      local reg_json = assert(json.encode(listing)) .. assert(json.canonical(listing))
      local canon = {}
      for i, r in ipairs(results) do canon[i] = assert(json.canonical(r.output)) end
      local t = assert(votes.tally(results, {}, "count"))
      return { reg = reg_json, canon = table.concat(canon, "\n"), winner = assert(json.canonical(t.winner)),
        agreed = t.count }
    end
    local want = jit_off(encode_all)
    assert.matches('"a60"', want.reg)
    local bad = 0
    for _ = 1, 3000 do
      local got = encode_all()
      if got.reg ~= want.reg or got.canon ~= want.canon or got.winner ~= want.winner
        or got.agreed ~= want.agreed then
        bad = bad + 1
      end
    end
    assert.equal(0, bad)
    os.execute("rm -rf " .. dir)
  end)
end)
