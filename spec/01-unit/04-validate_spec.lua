-- Config validation: both forms, defaults, and every error with its path.
local registry = require "chorus.engine.registry"
local validate = require "chorus.engine.validate"
local json = require "chorus.json"
local h = require "spec.helpers"

local snap = registry.new({ dirs = registry.default_dirs({ h.fixtures .. "/scripts" }) }):load()

local function errors_of(doc)
  local cfg, errors = validate.config(doc, snap)
  assert.is_nil(cfg, "expected the config to be invalid")
  local by = {}
  for _, e in ipairs(errors) do by[#by + 1] = e.path .. ": " .. e.message end
  return by, errors
end

local function has(list, pattern)
  for _, l in ipairs(list) do if l:match(pattern) then return true end end
  error("no error matches " .. pattern .. " in:\n" .. table.concat(list, "\n"), 2)
end

describe("config validation", function()
  it("accepts the seed form and the flat form and fills defaults", function()
    local seed = assert(validate.config({ name = "a", strategy = "parallel", steps = {
      steps = { { id = "s1", agent = "echo" } }, settings = { parallel_limit = 2 } } }, snap))
    local flat = assert(validate.config({ name = "a", strategy = "parallel",
      steps = { { id = "s1", agent = "echo" } }, settings = { parallel_limit = 2 } }, snap))
    assert.same(seed, flat)
    local s = seed.steps[1]
    assert.equal("abort", s.on_failure)
    assert.equal(validate.DEFAULT_STEP_TIMEOUT_MS, s.timeout_ms)
    assert.same({ max_attempts = 1, backoff_ms = 0 }, s.retry)
    assert.same({}, s.dependencies)
    assert.equal("s1", s.name)
    assert.equal(2, seed.settings.parallel_limit)
  end)

  it("accepts the example config", function()
    local doc = assert(json.decode(assert(io.open(h.root .. "/examples/incident-triage.json")):read("*a")))
    assert.is_table((validate.config(doc, snap)))
  end)

  it("rejects a root that is not an object", function()
    local _, errors = validate.config({ 1, 2 }, snap)
    assert.matches("must be a JSON object", errors[1].message)
    _, errors = validate.config("x", snap)
    assert.equal("(root)", errors[1].path)
  end)

  it("names missing and unknown top-level fields, strategy and name problems", function()
    local e = errors_of({ strategy = "nope", colour = 1 })
    has(e, "^name: is required")
    has(e, "^steps: is required")
    has(e, "^colour: unknown field")
    has(e, "^strategy: unknown strategy 'nope' %(known: .*parallel")
    e = errors_of({ name = "bad name; DROP TABLE x", strategy = "parallel", steps = { { id = "a", agent = "echo" } } })
    has(e, "^name: has invalid characters")
  end)

  it("lists every step error with its path in the seed form", function()
    local e = errors_of({ name = "c", strategy = "parallel", steps = { steps = {
      { id = "a", agent = "nope", dependencies = { "b", "zz", "a" } },
      { id = "b", agent = "echo", dependencies = { "a" }, timeout_ms = 0, retry = { max_attempts = 1000 } },
      { id = "b", agent = "echo", on_failure = "explode", unknown = true },
      "not a step",
    } } })
    has(e, "^steps%.steps%[0%]%.agent: unknown agent 'nope'")
    has(e, "^steps%.steps%[0%]%.dependencies%[1%]: unknown step 'zz'")
    has(e, "^steps%.steps%[0%]%.dependencies%[2%]: a step cannot depend on itself")
    has(e, "^steps%.steps%[1%]%.timeout_ms: must be >= 1, got 0")
    has(e, "^steps%.steps%[1%]%.retry%.max_attempts: must be <= 100, got 1000")
    has(e, "^steps%.steps%[2%]%.id: duplicate step id 'b' %(also steps%[1%]%)")
    has(e, "^steps%.steps%[2%]%.on_failure: must be one of abort, continue, fallback")
    has(e, "^steps%.steps%[2%]%.unknown: unknown field")
    has(e, "^steps%.steps%[3%]: must be an object")
    has(e, "dependency cycle: a %-> b %-> a")
  end)

  it("prints a longer cycle in order", function()
    local e = errors_of({ name = "c", strategy = "parallel", steps = {
      { id = "step_1", agent = "echo" },
      { id = "step_2", agent = "echo", dependencies = { "step_1", "step_4" } },
      { id = "step_3", agent = "echo", dependencies = { "step_2" } },
      { id = "step_4", agent = "echo", dependencies = { "step_3" } },
    } })
    has(e, "^steps%[1%]%.dependencies: dependency cycle: step_2 %-> step_4 %-> step_3 %-> step_2$")
  end)

  it("checks params against the agent's schema", function()
    local e = errors_of({ name = "p", strategy = "sequential", steps = {
      { id = "d", agent = "delay", params = { ms = "soon", extra = 1 } },
      { id = "e", agent = "delay" },
    } })
    has(e, "^steps%[0%]%.params%.ms: must be a number, got string \"soon\"")
    has(e, "^steps%[0%]%.params%.extra: unknown field")
    has(e, "^steps%[1%]%.params%.ms: is required")
    local cfg = assert(validate.config({ name = "p", strategy = "sequential", steps = {
      { id = "f", agent = "flaky" } } }, snap))
    assert.equal(1, cfg.steps[1].params.fail_times) -- default from the schema
  end)

  it("checks fallbacks", function()
    local e = errors_of({ name = "f", strategy = "sequential", steps = {
      { id = "a", agent = "echo", on_failure = "fallback" },
      { id = "b", agent = "echo", fallback_for = "nobody" },
      { id = "c", agent = "echo", is_fallback = true },
      { id = "d", agent = "echo", fallback_for = "d" },
      { id = "x", agent = "echo", fallback_for = "y" },
      { id = "y", agent = "echo", fallback_for = "x" },
      { id = "z", agent = "echo", dependencies = { "x" } },
    } })
    has(e, "^steps%[0%]%.on_failure: is 'fallback' but no step has fallback_for = 'a'")
    has(e, "^steps%[1%]%.fallback_for: names no step %('nobody'%)")
    has(e, "^steps%[2%]%.is_fallback: a fallback step needs fallback_for")
    has(e, "^steps%[3%]%.fallback_for: a step cannot be its own fallback")
    has(e, "^steps%[4%]%.fallback_for: fallback chain loops back")
    has(e, "^steps%[6%]%.dependencies%[0%]: 'x' is a fallback step")
  end)

  it("checks settings, output keys and compensations", function()
    local e = errors_of({ name = "s", strategy = "consensus", steps = {
      { id = "a", agent = "echo", output_key = "k", compensate = "nope" },
      { id = "b", agent = "echo", output_key = "k", compensate = { agent = "echo", timeout_ms = -1 } },
      { id = "c", agent = "echo", output_key = "1bad" },
    }, settings = { consensus_threshold = 1.5, aggregator = "nope", output_step = "zz",
      callback_url = "ftp://x", surprise = 1 } })
    has(e, "^steps%[0%]%.compensate%.agent: unknown agent 'nope'")
    has(e, "^steps%[1%]%.output_key: output_key 'k' is also used by step 'a'")
    has(e, "^steps%[1%]%.compensate%.timeout_ms: must be >= 1")
    has(e, "^steps%[2%]%.output_key: has invalid characters")
    has(e, "^settings%.consensus_threshold: must be <= 1, got 1%.5")
    has(e, "^settings%.aggregator: unknown aggregator 'nope'")
    has(e, "^settings%.output_step: names no step %('zz'%)")
    has(e, "^settings%.callback_url: has invalid characters %(an http:// or https:// URL%)")
    has(e, "^settings%.surprise: unknown field")
  end)

  it("rejects settings given in both places and empty step lists", function()
    local e = errors_of({ name = "s", strategy = "parallel", settings = {},
      steps = { steps = { { id = "a", agent = "echo" } }, settings = {} } })
    has(e, "^settings: settings given twice")
    e = errors_of({ name = "s", strategy = "parallel", steps = {} })
    has(e, "^steps: needs at least 1 step")
    e = errors_of({ name = "s", strategy = "parallel", steps = { steps = "x" } })
    has(e, "^steps%.steps: must be an array of steps")
  end)

  it("lets a strategy declare the extra settings it reads", function()
    local dir = h.tmpdir()
    h.write(dir .. "/strategies/custom.lua", [[
return { name = "custom", schema = { fields = { rounds = { type = "integer", min = 1, default = 2 } } },
  run = function(ctx, steps, settings) return settings.rounds end }]])
    local s2 = registry.new({ dirs = registry.default_dirs({ dir }) }):load()
    local cfg = assert(validate.config({ name = "c", strategy = "custom", steps = { { id = "a", agent = "echo" } } }, s2))
    assert.equal(2, cfg.settings.rounds)
    local _, errors = validate.config({ name = "c", strategy = "custom", settings = { rounds = 0 },
      steps = { { id = "a", agent = "echo" } } }, s2)
    assert.equal("settings.rounds", errors[1].path)
  end)

  it("formats errors one per line", function()
    assert.equal("a: x\nb: y", validate.format_errors({ { path = "a", message = "x" }, { path = "b", message = "y" } }))
  end)
end)
