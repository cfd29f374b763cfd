-- Aggregation rules: majority, weighted, merge.
local registry = require "chorus.engine.registry"

local snap = registry.new({ dirs = registry.default_dirs() }):load()
local function agg(name, results, opts)
  return snap.aggregators[name].module.aggregate(results, opts or {})
end
local function r(id, output, weight) return { step_id = id, ok = true, output = output, weight = weight } end
local function failed(id, weight) return { step_id = id, ok = false, error = "x", weight = weight } end

describe("aggregators", function()
  it("majority compares canonical JSON, ties go to the first answer", function()
    local out, info = agg("majority", { r("a", { x = 1, y = 2 }), r("b", { y = 2, x = 1 }), r("c", { x = 3 }) })
    assert.same({ x = 1, y = 2 }, out)
    assert.same({ agreed = 2, total = 3, score = 2 / 3 }, info)
    out, info = agg("majority", { r("a", "p"), r("b", "q") })
    assert.equal("p", out)
    assert.equal(0.5, info.score)
  end)

  it("majority can vote on one field", function()
    local out, info = agg("majority", { r("a", { answer = "yes", why = "1" }), r("b", { answer = "yes", why = "2" }),
      r("c", { answer = "no" }) }, { key = "answer" })
    assert.same({ answer = "yes", why = "1" }, out)
    assert.equal(2, info.agreed)
  end)

  it("fails when no member answered", function()
    for _, name in ipairs({ "majority", "weighted", "merge" }) do
      local out, err = agg(name, { failed("a"), failed("b") })
      assert.is_nil(out)
      assert.equal("no member answered", err)
    end
  end)

  it("weighted lets weight outvote numbers", function()
    local out, info = agg("weighted", { r("a", "cheap", 1), r("b", "cheap", 1), r("c", "expert", 3), failed("d", 1) })
    assert.equal("expert", out)
    assert.equal(1, info.agreed)
    assert.equal(4, info.total)
    assert.near(3 / 6, info.score, 1e-9)
  end)

  it("merge deep-merges objects; a conflicting member does not agree", function()
    local out, info = agg("merge", { r("a", { x = 1, sub = { p = 1 } }), r("b", { y = 2, sub = { q = 2 } }),
      r("c", { x = 9 }) })
    assert.same({ x = 1, y = 2, sub = { p = 1, q = 2 } }, out)
    assert.same({ agreed = 2, total = 3, score = 2 / 3 }, info)
  end)

  it("merge unions arrays and refuses scalars or mixed kinds", function()
    local out = agg("merge", { r("a", { 1, 2 }), r("b", { 2, 3 }) })
    assert.same({ 1, 2, 3 }, out)
    local bad, err = agg("merge", { r("a", "text") })
    assert.is_nil(bad)
    assert.matches("step a gave a string", err)
    bad, err = agg("merge", { r("a", { 1 }), r("b", { k = 1 }) })
    assert.is_nil(bad)
    assert.matches("cannot mix", err)
  end)
end)
