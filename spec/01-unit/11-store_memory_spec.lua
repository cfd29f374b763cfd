-- The in-memory store against the store contract, plus its bound.
local h = require "spec.helpers"
local memory = require "chorus.store.memory"

describe("memory store", function()
  require("spec.shared.store_contract")(function()
    local store = memory.new()
    local engine = h.engine({ store = store })
    return store, engine
  end)

  it("keeps at most max_finished finished executions", function()
    local store = memory.new({ max_finished = 3 })
    local engine = h.engine({ store = store })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    local ids = {}
    for i = 1, 5 do ids[i] = engine:execute(cfg, {}):wait().id end
    assert.is_nil(store:get_record(ids[1]))
    assert.is_nil(store:get_record(ids[2]))
    assert.is_table(store:get_record(ids[3]))
    local _, total = store:list_executions({})
    assert.equal(3, total)
  end)
end)
