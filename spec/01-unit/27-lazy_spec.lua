-- chorus.lazy, and the built-in agents' use of it: a node that loads its
-- agents does not load their adapters' modules until one is called (the
-- engine's live heap, which every collection cycle walks, stays small).
local h = require "spec.helpers"
local lazy = require "chorus.lazy"

describe("chorus.lazy", function()
  it("requires the module at its first use, then reads and writes through it", function()
    local name = "spec_lazy_probe_" .. tostring(os.time())
    local loads = 0
    package.preload[name] = function()
      loads = loads + 1
      return { answer = 42, f = function(x) return x + 1 end }
    end
    local m = lazy(name)
    assert.equal(0, loads)
    assert.equal(42, m.answer)
    assert.equal(2, m.f(1))
    assert.equal(1, loads)
    m.extra = "set"
    assert.equal("set", require(name).extra)
    assert.equal(1, loads)
    package.preload[name], package.loaded[name] = nil, nil
  end)

  it("raises where the module is first used when it cannot be loaded", function()
    local m = lazy("spec_no_such_module_anywhere")
    assert.has_error(function() return m.x end)
  end)
end)

describe("the built-in agents", function()
  it("load their adapters' modules when called, not when the registry loads them", function()
    local dir = h.tmpdir()
    h.write(dir .. "/probe.lua", [[
      local engine = require("chorus.engine").new({ store_opts = { max_finished = 0 } })
      local loaded = {}
      for _, m in ipairs({ "chorus.handler", "chorus.http.call", "chorus.llm.chat", "chorus.tws.client",
        "chorus.tws.job", "chorus.kb.search", "chorus.kb.embeddings", "chorus.run.resources" }) do
        if package.loaded[m] then loaded[#loaded + 1] = m end
      end
      assert(engine.registry:snapshot().agents.llm, "the llm agent is loaded")
      print(#loaded == 0 and "none" or table.concat(loaded, " "))
    ]])
    local code, out, err = h.sh(("%s lua %s/probe.lua"):format(h.binary, dir))
    assert.equal(0, code, err)
    assert.equal("none", (out:gsub("%s+$", "")))
  end)
end)
