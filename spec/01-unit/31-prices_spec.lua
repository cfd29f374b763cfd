-- chorus.llm.prices: the price table's format, layering, lookup by dated
-- names, unknown models (cost 0 and a note), refused files and reloads.
local prices = require "chorus.llm.prices"
local native = require "chorus.native"
local h = require "spec.helpers"

local function write(dir, text) h.write(dir .. "/prices.json", text) end

describe("chorus.llm.prices", function()
  after_each(function() prices.use({ native.home }) end)

  it("ships a valid built-in table", function()
    prices.use({ native.home })
    assert.same({}, prices.errors())
    local e = assert(prices.lookup("gpt-4o-mini"))
    assert.equal(0.15, e.input)
    assert.equal(0.60, e.output)
  end)

  it("prices per million tokens, and finds dated variants of a priced model", function()
    local d = h.tmpdir()
    write(d, [[{"models": {"m": {"input": 2, "output": 10}, "m-large": {"input": 5, "output": 20}}}]])
    prices.use({ d })
    assert.near(1000 * 2 / 1e6 + 500 * 10 / 1e6, prices.cost("m", 1000, 500), 1e-12)
    assert.equal("m", prices.lookup("m-2024-07-18").name)
    assert.equal("m-large", prices.lookup("m-large-2025").name)
    assert.is_nil(prices.lookup("mx"))
  end)

  it("costs 0 with a note for a model it does not know, never a guess", function()
    local cost, note = prices.cost("nobody-knows", 1000, 1000)
    assert.equal(0, cost)
    assert.truthy(note:find("no price for model 'nobody-knows'", 1, true))
  end)

  it("layers files: a later directory's entry wins, others stay", function()
    local a, b = h.tmpdir(), h.tmpdir()
    write(a, [[{"models": {"x": {"input": 1, "output": 1}, "y": {"input": 3, "output": 3}}}]])
    write(b, [[{"_comment": "overlay", "models": {"x": {"input": 9, "output": 9, "note": "ours"}}}]])
    prices.use({ a, b })
    assert.equal(9, prices.lookup("x").input)
    assert.equal(3, prices.lookup("y").input)
  end)

  it("refuses a broken file whole, says where, and keeps the version loaded before", function()
    local d = h.tmpdir()
    write(d, [[{"models": {"x": {"input": 1, "output": 2}}}]])
    prices.use({ d })
    for _, bad in ipairs({
      { [[{"models": {"x": {"input": -1}}}]], "models.x.input" },
      { [[{"models": {"x": {"input": 1, "outptu": 2}}}]], "unknown field \"outptu\"" },
      { [[{"modles": {}}]], "unknown field \"modles\"" },
      { [[{"models": [1, 2]}]], "must be an object" },
      { [[{"models": ]], "invalid JSON" },
    }) do
      write(d, bad[1])
      local ok, errs = prices.reload()
      assert.is_nil(ok)
      assert.truthy(errs[1].message:find(bad[2], 1, true), errs[1].message)
      assert.truthy(errs[1].message:find(d, 1, true))
      assert.equal(2, prices.lookup("x").output)
    end
    write(d, [[{"models": {"x": {"input": 1, "output": 4}}}]])
    assert.is_true(prices.reload())
    assert.equal(4, prices.lookup("x").output)
  end)

  it("reloads a watched file when it changes", function()
    local d = h.tmpdir()
    write(d, [[{"models": {"w": {"input": 1, "output": 1}}}]])
    prices.use({ d }, { watch = true, debounce_ms = 10 })
    write(d, [[{"models": {"w": {"input": 7, "output": 1}}}]])
    assert.is_true(h.wait_until(function() return prices.lookup("w").input == 7 end, 3000))
    prices.unwatch()
  end)
end)
