-- chorus.schema: every kind of check, all errors reported, defaults.
local schema = require "chorus.schema"
local json = require "chorus.json"

local function check(v, s)
  local errors = {}
  local out = schema.check(v, s, "", errors)
  return out, errors
end

local function messages(errors)
  local out = {}
  for i, e in ipairs(errors) do out[i] = e.path .. ": " .. e.message end
  return out
end

describe("chorus.schema", function()
  local S = { type = "object", fields = {
    name = { type = "string", required = true, min_len = 1, max_len = 5 },
    n = { type = "integer", min = 1, max = 10, default = 3 },
    mode = { type = "string", enum = { "a", "b" } },
    list = { type = "array", items = { type = "number" }, max_items = 2 },
    id = { type = "string", pattern = "^%w+$", pattern_help = "letters and digits" },
    either = { type = { "boolean", "number" } },
  } }

  it("fills defaults and keeps valid values", function()
    local out, errors = check({ name = "abc" }, S)
    assert.same({}, errors)
    assert.same({ name = "abc", n = 3 }, out)
  end)

  it("reports every problem with its path", function()
    local _, errors = check({ n = 11, mode = "c", list = { 1, "x", 3 }, extra = 1, id = "a b", either = "s" }, S)
    assert.same({
      "name: is required",
      "n: must be <= 10, got 11",
      "mode: must be one of a, b, got string \"c\"",
      "list: allows at most 2 items, got 3",
      "list[1]: must be a number, got string \"x\"",
      "id: has invalid characters (letters and digits)",
      "either: must be a boolean or a number, got string \"s\"",
      "extra: unknown field (known: either, id, list, mode, n, name)",
    }, (function()
      local m = messages(errors)
      table.sort(m, function(a, b)
        local order = { name = 1, n = 2, mode = 3, list = 4, ["list[1]"] = 5, id = 6, either = 7, extra = 8 }
        return order[a:match("^[^:]+")] < order[b:match("^[^:]+")]
      end)
      return m
    end)())
  end)

  it("treats JSON null as absent", function()
    local out, errors = check({ name = "x", n = json.null }, S)
    assert.same({}, errors)
    assert.equal(3, out.n)
  end)

  it("rejects wrong types at the root and non-finite numbers", function()
    local _, errors = check("str", S)
    assert.same({ "(root): must be an object, got string \"str\"" }, messages(errors))
    _, errors = check({ name = "x", n = math.huge }, S)
    assert.matches("finite", errors[1].message)
  end)

  it("copies defaults so they are never shared", function()
    local s = { type = "object", fields = { t = { type = "object", additional = true, default = { k = 1 } } } }
    local a = check({}, s)
    a.t.k = 2
    local b = check({}, s)
    assert.equal(1, b.t.k)
  end)

  it("checks schemas themselves", function()
    assert.is_true(schema.check_schema({ fields = { x = { type = "string" } } }))
    local ok, err = schema.check_schema({ fields = { x = { type = "nope" } } })
    assert.is_nil(ok)
    assert.matches("unknown type 'nope'", err)
    ok, err = schema.check_schema({ fields = { x = { tipe = "string" } } })
    assert.is_nil(ok)
    assert.matches("unknown key 'tipe'", err)
    assert.is_nil((schema.check_schema("x")))
  end)
end)
