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

  -- The fast encoder (runtime/rt_lua_json.c) must write cjson's very
  -- bytes for what it covers, and leave the rest to cjson (nil).
  describe("fast encoder", function()
    local native = require "chorus.native"
    local cjson = require "cjson.safe" -- configured by chorus.json
    local fast = native.json_encode

    local function same_as_cjson(v, what)
      local want = cjson.encode(v)
      local got = fast(v)
      assert.equal(want, got, what)
    end

    it("writes numbers as cjson does (%.14g)", function()
      for _, x in ipairs({ 0, -0.0, 1, -1, 7, 0.1, 1 / 3, -2.5, 1e14 - 1, -(1e14 - 1), 1e14, 1e15, 2 ^ 53,
        -2 ^ 63, 1e300, 1e-7, 5e-324, 123456789012345.6, 99999999999999.5, 0.30000000000000004, 1e21 }) do
        same_as_cjson({ x, { n = x } }, tostring(x))
      end
    end)

    it("escapes strings as cjson does, every byte", function()
      local all = {}
      for b = 0, 255 do all[#all + 1] = string.char(b) end
      same_as_cjson(table.concat(all), "every byte")
      same_as_cjson({ ["a/b\\"] = 'q"u\n\0te\127', ["\1"] = "é€😀", [""] = "" }, "keys and values")
    end)

    it("writes random documents byte for byte as cjson", function()
      local seed = 20261203
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local function str()
        local parts = {}
        for i = 1, rnd(12) do parts[i] = string.char(rnd(4) == 0 and rnd(256) or 97 + rnd(26)) end
        return table.concat(parts)
      end
      local gen
      gen = function(depth)
        local kind = rnd(depth > 4 and 5 or 8)
        if kind == 0 then return rnd(2) == 0
        elseif kind == 1 then return (rnd(2000000) - 1000000) / (rnd(3) == 0 and 7 or 1)
        elseif kind == 2 then return str()
        elseif kind == 3 then return json.null
        elseif kind == 4 then return rnd(1e9) * 1e6
        elseif kind <= 6 then
          local t = {}
          for _ = 1, rnd(6) do t[str()] = gen(depth + 1) end
          return t
        else
          local t = {}
          for i = 1, rnd(6) do t[i] = gen(depth + 1) end
          return t
        end
      end
      for i = 1, 3000 do
        local v = gen(0)
        same_as_cjson(v, "document " .. i)
      end
    end)

    it("leaves to cjson what it does not cover", function()
      local deep = {}
      local cur = deep
      for _ = 1, 110 do cur.x = {}; cur = cur.x end
      for name, v in pairs({
        holes = { 1, nil, 3 }, from_two = { [2] = "b" }, mixed = { 1, a = 2 }, float_key = { [1.5] = 1 },
        bool_key = { [true] = 1 }, nan = { 0 / 0 }, inf = { n = math.huge }, fn = { f = print },
        marked_empty = { list = json.array() }, deep = deep, udata = { io.stdout },
      }) do
        assert.is_nil(fast(v), name)
      end
      -- ... and chorus.json still answers as before for them.
      assert.equal('{"list":[]}', json.encode({ list = json.array() }))
      assert.equal('[1,null,3]', json.encode({ 1, nil, 3 }))
      assert.is_nil((json.encode({ f = print })))
    end)
  end)
end)
