-- Registry: layered script directories, contract checks, hot reload that
-- never replaces a working file with a broken one, pinned versions.
local h = require "spec.helpers"
local registry = require "chorus.engine.registry"
local native = require "chorus.native"
local sched = require "chorus.sched"

local function agent_src(output, ms)
  return ([[
local sched = require "chorus.sched"
return { name = "hot", version = "1", call = function()
  sched.sleep(%d)
  return %q
end }
]]):format(ms or 0, output)
end

describe("registry", function()
  it("loads the built-in strategies, agents and aggregators", function()
    local reg = registry.new({ dirs = registry.default_dirs() })
    local snap, errors = reg:load()
    assert.same({}, errors)
    for _, s in ipairs({ "sequential", "parallel", "consensus", "fallback" }) do assert.is_table(snap.strategies[s]) end
    for _, a in ipairs({ "echo", "delay", "fail", "flaky" }) do assert.is_table(snap.agents[a]) end
    for _, a in ipairs({ "majority", "merge", "weighted" }) do assert.is_table(snap.aggregators[a]) end
    assert.matches("^%x%x%x%x%x%x%x%x%x%x%x%x$", snap.agents.echo.version)
  end)

  it("a later script directory overrides a built-in of the same name", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/echo.lua", 'return { name = "echo", call = function() return "overlay" end }')
    local engine = h.engine({ scripts = { dir } })
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "echo" } }), {}, { engine = engine })
    assert.equal("overlay", exec.output)
  end)

  it("reports broken files with file:line and every contract violation", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/syntax.lua", "return { name = 'syntax', call = function() end")
    h.write(dir .. "/agents/noname.lua", "return { call = function() end }")
    h.write(dir .. "/agents/nohook.lua", "return { name = 'nohook' }")
    h.write(dir .. "/agents/raises.lua", "error('at load time')")
    h.write(dir .. "/agents/notable.lua", "return 42")
    h.write(dir .. "/agents/badschema.lua", "return { name = 'badschema', schema = { fields = { x = { type = 'nope' } } }, call = function() end }")
    local reg = registry.new({ dirs = { native.home, dir } })
    local snap, errors = reg:load()
    local by = {}
    for _, e in ipairs(errors) do by[e.name] = e.message end
    assert.matches("syntax.lua:1:", by.syntax)
    assert.matches("name must be 'noname'", by.noname)
    assert.matches("missing function 'call'", by.nohook)
    assert.matches("raises.lua:1: at load time", by.raises)
    assert.matches("must return a table, got number", by.notable)
    assert.matches("bad schema", by.badschema)
    assert.is_nil(snap.agents.syntax)
    assert.is_table(snap.agents.echo)
  end)

  it("hot reload: the running execution keeps the old version, the next one gets the new", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/hot.lua", agent_src("v1", 80))
    local engine = h.engine({ scripts = { dir }, watch = true })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "hot" } })))
    local first = engine:execute(cfg, {})
    sched.sleep(10) -- first is inside the old agent now
    h.write(dir .. "/agents/hot.lua", agent_src("v2"))
    assert.is_true(h.wait_until(function() return engine.registry.current.agents.hot.module.call ~= nil
      and engine.registry.current.generation > 1 end, 2000))
    local second = engine:execute(cfg, {}):wait()
    first:wait()
    engine:close()
    assert.equal("v1", first.output)
    assert.equal("v2", second.output)
    assert.are_not.equal(first:run_of("a").agent_version, second:run_of("a").agent_version)
  end)

  it("hot reload: a syntax error keeps the working version and reports the error", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/hot.lua", agent_src("good"))
    local engine = h.engine({ scripts = { dir }, watch = true })
    local v1 = engine.registry.current.agents.hot.version
    h.write(dir .. "/agents/hot.lua", "return { name = 'hot', call = function() return 'bad' end")
    assert.is_true(h.wait_until(function() return #engine.registry.current.errors > 0 end, 2000))
    local snap = engine.registry.current
    assert.matches("hot.lua:%d+:", snap.errors[1].message)
    assert.equal(v1, snap.agents.hot.version)
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "hot" } }), {}, { engine = engine })
    engine:close()
    assert.equal("good", exec.output)
    assert.is_true(engine.registry.reload_errors >= 1)
  end)

  it("reloads on SIGHUP", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/hot.lua", agent_src("one"))
    local engine = h.engine({ scripts = { dir } })
    engine.registry:watch({ debounce_ms = 1 })
    engine.registry:unwatch() -- keep only a fresh SIGHUP hook below
    local reloaded = false
    engine.registry.on_reload = function() reloaded = true end
    engine.registry:watch({ debounce_ms = 1 })
    -- Change the file without an fs event being needed: SIGHUP alone.
    h.write(dir .. "/agents/hot.lua", agent_src("two"))
    os.execute("kill -HUP " .. native.pid())
    assert.is_true(h.wait_until(function() return reloaded end, 2000))
    engine:close()
    local exec = h.run(h.flat("sequential", { { id = "a", agent = "hot" } }), {}, { engine = engine })
    assert.equal("two", exec.output)
  end)

  it("lists entries with versions and errors", function()
    local reg = registry.new({ dirs = registry.default_dirs() })
    reg:load()
    local l = reg:list()
    assert.equal("consensus", l.strategies[1].name)
    assert.is_string(l.agents[1].version)
    assert.same({}, l.errors)
  end)
end)
