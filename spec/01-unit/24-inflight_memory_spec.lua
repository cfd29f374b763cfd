-- The memory an execution in flight holds is a figure we keep: a change
-- that makes it more than 10 % larger than bench/engine/inflight_baseline
-- .json fails here (measured by bench/engine/inflight_probe.lua in a
-- process of its own, 20,000 executions of the reference workload waiting).
local h = require "spec.helpers"
local json = require "chorus.json"

describe("memory of an execution in flight", function()
  it("stays within 10 % of its recorded figure", function()
    local f = assert(io.open(h.root .. "/bench/engine/inflight_baseline.json"))
    local base = json.decode(f:read("*a"))
    f:close()
    local workload = h.root .. "/bench/engine/workload.json" -- a copy of ../shared/bench's
    local code, out, err = h.sh(("WORKLOAD=%s %s lua %s/bench/engine/inflight_probe.lua %d 1500"):format(
      workload, h.binary, h.root, base.n))
    assert.equal(0, code, err)
    local got = assert(json.decode(out:match("[^\n]+")))
    assert.is_true(got.all_waiting)
    assert.is_true(got.lua_bytes_per_exec <= base.lua_bytes_per_exec * 1.1,
      ("Lua heap per execution: %.0f bytes, recorded %d"):format(got.lua_bytes_per_exec, base.lua_bytes_per_exec))
    assert.is_true(got.c_bytes_per_exec <= base.c_bytes_per_exec * 1.1,
      ("C heap per execution: %.0f bytes, recorded %d"):format(got.c_bytes_per_exec, base.c_bytes_per_exec))
  end)
end)
