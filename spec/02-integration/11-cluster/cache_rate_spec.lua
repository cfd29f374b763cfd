-- What nodes share through Redis: the step result cache and rate limits.
-- Three processes sharing a 10/s limit stay within it together. #redis
local h = require "spec.helpers"
local c = require "spec.support.clients"
local cluster = require "chorus.run.cluster"
local step_cache = require "chorus.engine.step_cache"
local redis = require "chorus.db.redis"

describe("cluster features over Redis #redis", function()
  local url = os.getenv("CHORUS_TEST_REDIS")
  if not url then
    pending("CHORUS_TEST_REDIS is not set")
    return
  end
  teardown(function() cluster.configure({}) end)

  it("a step result cached by one node is a hit on another", function()
    cluster.configure({ redis_url = url })
    step_cache.reset()
    local p = h.probe()
    local doc = h.flat("sequential", { { id = "c", agent = "counter", cache = { ttl_s = 30 } } })
    local input = { q = "shared-" .. require("chorus.native").random_hex(4) }
    local first = h.run(doc, input, { engine = h.engine() })
    step_cache.reset() -- nothing of it left in this process: the hit must come from Redis
    local second = h.run(doc, input, { engine = h.engine() })
    assert.equal(1, #p.calls)
    assert.is_true(second:run_of("c").cached)
    assert.equal(first.id, second:run_of("c").cached_from)
    local r = assert(redis.connect(url))
    local keys = assert(r:call("KEYS", "chorus:cache:*"))
    assert.is_true(#keys >= 1)
    local ttl = assert(r:call("TTL", keys[1]))
    assert.is_true(ttl > 0 and ttl <= 30)
    r:close()
  end)

  it("three processes sharing a 10/s limit stay within it together (±10%)", function()
    local name = "shared_" .. require("chorus.native").random_hex(4)
    local script = os.tmpname() .. ".lua"
    h.write(script, ([[
      local cluster = require "chorus.run.cluster"
      local rate_limit = require "chorus.engine.rate_limit"
      local native = require "chorus.native"
      cluster.configure({ redis_url = %q })
      local start = tonumber((...))
      while native.time() < start do require("chorus.sched").sleep(5) end
      local stamps = {}
      while native.time() < start + 4 do
        assert(rate_limit.acquire(%q, { per_second = 10, burst = 1 }))
        stamps[#stamps + 1] = ("%%.3f"):format(native.time())
      end
      io.stdout:write(table.concat(stamps, "\n"), "\n")
    ]]):format(url, name))
    local start = require("chorus.native").time() + 1.0
    local jobs = {}
    for i = 1, 3 do jobs[i] = c.bg(("%s lua %s %.3f"):format(h.binary, script, start)) end
    local calls = 0
    for i = 1, 3 do
      local rc, out, err = jobs[i]:wait(20000)
      assert.equal(0, rc, err)
      for line in out:gmatch("[^\n]+") do
        local t = tonumber(line)
        if t < start + 4 then calls = calls + 1 end
      end
    end
    -- a burst of 1, then 10 a second for 4 s, whoever asks
    assert.is_true(calls >= 37 and calls <= 45, "calls in 4 s: " .. calls)
  end)
end)
