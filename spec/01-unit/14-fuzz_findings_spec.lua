-- What the fuzz targets (tests/fuzz) found, kept as specs: each input made
-- the validator raise (a 500 through the API), or the API answer wrong.
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local h = require "spec.helpers"
local json = require "chorus.json"
local memory = require "chorus.store.memory"
local registry = require "chorus.engine.registry"
local runner_mod = require "chorus.run.memory"
local validate = require "chorus.engine.validate"

local snap = registry.new({ dirs = registry.default_dirs() }):load()

-- errors_of(text) -> {"path: message"...}; the config must be invalid.
local function errors_of(text)
  local doc = assert(json.decode(text))
  local cfg, errs = validate.config(doc, snap)
  assert.is_nil(cfg)
  local out = {}
  for i, e in ipairs(errs) do
    assert.is_string(e.path)
    assert.is_string(e.message)
    out[i] = e.path .. ": " .. e.message
  end
  return table.concat(out, "\n")
end

describe("fuzz findings", function()
  describe("json.decode", function()
    it("refuses NaN, Infinity and hex numbers (not JSON, and they cannot be encoded back)", function()
      for _, text in ipairs({ "[NaN]", "[nan]", "[Infinity]", "[-inf]", "[0x10]" }) do
        local v, err = json.decode(text)
        assert.is_nil(v, text)
        assert.matches("^invalid JSON", err)
      end
    end)

    it("refuses a number beyond the double range, keeps large and long ones", function()
      for _, text in ipairs({ "[1e400]", '{"a":[-1E+309]}', "[" .. ("9"):rep(400) .. "]" }) do
        local v, err = json.decode(text)
        assert.is_nil(v, text)
        assert.equal("invalid JSON: a number is out of range", err)
      end
      assert.equal(1e300, json.decode("[1e300]")[1])
      assert.equal(1e-400, json.decode("[1e-400]")[1])
      assert.equal(12345678901234567890, json.decode('{"n":12345678901234567890}').n)
      assert.equal("e999", json.decode('["e999"]')[1])
    end)
  end)

  describe("validate.config reports, never raises", function()
    it("a step without an id that is a fallback", function()
      local e = errors_of('{"name":"x","strategy":"fallback","steps":[{"id":"p","agent":"fail"},'
        .. '{"agent":"echo","fallback_for":"p"}]}')
      assert.matches("steps%[1%]%.id: is required", e)
    end)

    it("dependencies that are not a list", function()
      local e = errors_of('{"name":"x","strategy":"parallel","steps":[{"id":"a","agent":"echo"},'
        .. '{"id":"b","agent":"echo","dependencies":"a"}]}')
      assert.matches("steps%[1%]%.dependencies: must be an array", e)
    end)

    it("settings that are not an object, in both forms", function()
      for _, s in ipairs({ "5", "true" }) do
        local e = errors_of('{"name":"x","strategy":"parallel","steps":[{"id":"a","agent":"echo"}],"settings":' .. s .. "}")
        assert.matches("^settings: must be an object", e)
        e = errors_of('{"name":"x","strategy":"parallel","steps":{"steps":[{"id":"a","agent":"echo"}],"settings":' .. s .. "}}")
        assert.matches("steps%.settings: must be an object", e)
      end
    end)
  end)

  describe("the API", function()
    local svc, key

    before_each(function()
      local store = memory.new()
      local engine = h.engine({ store = store })
      svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
        auth = auth.new({ store = store, ttl_ms = 0 }) }
      svc.app = api.new(svc)
      local k
      key, k = auth.generate()
      store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = "t1", user_id = "root", role = "admin" })
    end)

    local function get(path, query)
      return svc.app:handle({ method = "GET", path = path, query = query or "",
        headers = { authorization = "Bearer " .. key }, body = "" })
    end

    it("an empty page is \"items\": [], not {}", function()
      for _, path in ipairs({ "/api/v1/orchestrations/configs", "/api/v1/orchestrations/executions" }) do
        local s, _, b = get(path)
        assert.equal(200, s)
        assert.truthy(b:find('"items":[]', 1, true), b)
      end
    end)

    it("no registry errors is \"errors\": []", function()
      local s, _, b = get("/api/v1/registry")
      assert.equal(200, s)
      assert.truthy(b:find('"errors":[]', 1, true), b)
      s, _, b = svc.app:handle({ method = "POST", path = "/api/v1/registry/reload", query = "",
        headers = { authorization = "Bearer " .. key }, body = "" })
      assert.equal(200, s)
      assert.truthy(b:find('"errors":[]', 1, true), b)
    end)

    it("a huge limit is quoted as sent", function()
      local s, _, b = get("/api/v1/orchestrations/configs", "limit=99999999999999999999")
      assert.equal(400, s)
      assert.matches("got 99999999999999999999", json.decode(b).error.message)
    end)

    it("a body with NaN is invalid JSON (400), not a 500 when the answer is encoded", function()
      local s, _, b = svc.app:handle({ method = "POST", path = "/api/v1/orchestrations/configs", query = "",
        headers = { authorization = "Bearer " .. key, ["content-type"] = "application/json" },
        body = '{"name":"n","strategy":"parallel","steps":[{"id":"a","agent":"echo","params":{"output":NaN}}]}' })
      assert.equal(400, s)
      assert.equal("invalid_json", json.decode(b).error.code)
    end)
  end)
end)
