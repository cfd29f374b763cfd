-- chorus.json: errors as values, depth limit, canonical form, arrays.
local json = require "chorus.json"

describe("chorus.json", function()
  it("decodes and encodes", function()
    assert.same({ a = { 1, 2 }, b = "x" }, json.decode('{"a":[1,2],"b":"x"}'))
    assert.equal('{"a":1}', json.encode({ a = 1 }))
    assert.equal(json.null, json.decode('{"a":null}').a)
  end)

  it("returns nil and a message for invalid JSON", function()
    local v, err = json.decode("{ not json")
    assert.is_nil(v)
    assert.matches("^invalid JSON: ", err)
    v, err = json.decode(42)
    assert.is_nil(v)
    assert.matches("expected a string", err)
  end)

  it("refuses documents nested deeper than the limit", function()
    local deep = ("["):rep(json.MAX_DEPTH + 5) .. ("]"):rep(json.MAX_DEPTH + 5)
    local v, err = json.decode(deep)
    assert.is_nil(v)
    assert.matches("invalid JSON", err)
    local t = {}
    local cur = t
    for _ = 1, json.MAX_DEPTH + 5 do cur.x = {} cur = cur.x end
    local s, eerr = json.encode(t)
    assert.is_nil(s)
    assert.is_string(eerr)
  end)

  it("canonical form sorts keys at every level", function()
    assert.equal(json.canonical({ b = 1, a = { d = true, c = "x" } }), json.canonical({ a = { c = "x", d = true }, b = 1 }))
    assert.equal('{"a":{"c":"x","d":true},"b":1}', json.canonical({ b = 1, a = { d = true, c = "x" } }))
    assert.equal("[3,1,2]", json.canonical({ 3, 1, 2 }))
    assert.equal("1.5", json.canonical(1.5))
    assert.equal("12345678901", json.canonical(12345678901))
    assert.is_nil((json.canonical(0 / 0)))
  end)

  it("marks arrays that must stay arrays when empty", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal('{"a":[]}', json.encode({ a = json.array() }))
    assert.equal("{}", json.encode({}))
    assert.is_true(json.is_array({ 1, 2 }))
    assert.is_false(json.is_array({ 1, x = 2 }))
  end)
end)
