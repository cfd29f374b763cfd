-- Events over WebSockets: a long history replays to a fast reader in
-- full (it is waited for, not dropped as a slow consumer), and the first
-- message of /ws/execute must be a JSON object.
local h = require "spec.helpers"
local c = require "spec.support.clients"
local client = require "chorus.http.client"
local json = require "chorus.json"

local function serve(args)
  local log = os.tmpname()
  local pid = h.spawn(("%s serve --listen 127.0.0.1:0 --no-auth --scripts %s/scripts %s"):format(
    h.binary, h.fixtures, args or ""), log)
  local port
  assert(h.wait_until(function()
    port = tonumber(table.concat(h.read_lines(log), "\n"):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. table.concat(h.read_lines(log), "\n"))
  return { pid = pid, port = port, base = "http://127.0.0.1:" .. port }
end

describe("WebSocket events", function()
  local has_node, s
  setup(function()
    has_node = c.setup()
    s = serve()
  end)
  teardown(function()
    h.kill(s.pid)
    h.wait_exit(s.pid, 10000)
    c.cleanup()
  end)

  it("replays a history larger than the slow-consumer limit to a fast reader, in full", function()
    assert(has_node, "node with a global WebSocket is required")
    -- 900 deltas of 2 KiB: about 2 MB of history, twice the 1 MiB a
    -- socket may have queued.
    local doc = { config = h.flat("sequential", { { id = "s", agent = "streamer", params = { n = 900, bytes = 2048 } } }) }
    local res = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/execute",
      headers = { ["content-type"] = "application/json" }, body = json.encode(doc), timeout_ms = 10000 }))
    local trace = json.decode(res.body).trace_id
    assert(h.wait_until(function()
      local r = assert(client.request({ url = s.base .. "/api/v1/orchestrations/status/" .. trace }))
      return json.decode(r.body).status == "completed"
    end, 20000))
    local got = c.node_result(c.node_ws(s, "/ws/executions/" .. trace, nil, 0))
    local deltas, last = 0, json.decode(got.got[#got.got])
    for _, m in ipairs(got.got) do
      local e = json.decode(m)
      if e.type == "step.delta" then deltas = deltas + 1 end
      assert.is_not_equal("error", e.type, m:sub(1, 200))
    end
    assert.equal(900, deltas)
    assert.equal("result", last.type)
    assert.equal(1000, got.code)
  end)

  -- Messages are encoded straight into their frame (ws:send_json); what
  -- that encoder leaves to cjson (an empty list, here) goes the long way
  -- and arrives the same.
  it("sends every message, also those its fast encoder leaves to cjson", function()
    assert(has_node, "node with a global WebSocket is required")
    local cfg = h.flat("sequential", { { id = "e", agent = "echo", params = { output = { items = json.array({}) } } } })
    cfg.name = "empty-list"
    local r = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/configs",
      headers = { ["content-type"] = "application/json" }, body = json.encode(cfg) }))
    assert.equal(201, r.status)
    local got = c.node_result(c.node_ws(s, "/ws/execute/empty-list", { '{"input": {}}' }, 0))
    local last = json.decode(got.got[#got.got])
    assert.equal("result", last.type)
    assert.equal("completed", last.execution.status)
    assert.truthy(got.got[#got.got]:find('"items":[]', 1, true), got.got[#got.got]:sub(1, 300))
    for _, m in ipairs(got.got) do
      local e = json.decode(m)
      if e.at then assert.truthy(e.at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), m) end
    end
    assert.equal(1000, got.code)
  end)

  -- An event going to many followers is encoded once and its text sent
  -- to each (ws:send_json's key): every follower gets the same messages,
  -- and a follower of every execution (/ws/events) its share of them.
  it("sends every follower of an execution the same messages", function()
    assert(has_node, "node with a global WebSocket is required")
    local cfg = h.flat("sequential", { { id = "a", agent = "delay", params = { ms = 300 } },
      { id = "s", agent = "streamer", params = { n = 20, bytes = 16 }, dependencies = { "a" } } })
    cfg.name = "followed"
    local r = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/configs",
      headers = { ["content-type"] = "application/json" }, body = json.encode(cfg) }))
    assert.equal(201, r.status)
    local all = c.node_ws(s, "/ws/events", nil, 8)
    r = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/execute/followed",
      headers = { ["content-type"] = "application/json" }, body = "{}" }))
    local trace = json.decode(r.body).trace_id
    local jobs = {}
    for i = 1, 3 do jobs[i] = c.node_ws(s, "/ws/executions/" .. trace, nil, 0) end
    local got = {}
    for i = 1, 3 do got[i] = c.node_result(jobs[i]).got end
    assert.is_true(#got[1] >= 24, #got[1] .. " messages") -- 20 deltas, statuses, the result
    assert.same(got[1], got[2])
    assert.same(got[1], got[3])
    local deltas = 0
    for _, m in ipairs(got[1]) do
      if json.decode(m).type == "step.delta" then deltas = deltas + 1 end
    end
    assert.equal(20, deltas)
    -- The follower of every execution got its first eight events, the
    -- very texts the execution's followers got.
    local texts = {}
    for _, m in ipairs(got[1]) do texts[m] = true end
    local seen = c.node_result(all).got
    assert.equal(8, #seen)
    for _, m in ipairs(seen) do assert.is_true(texts[m] ~= nil, m) end
  end)

  it("refuses a JSON array (or anything but an object) as the first message of /ws/execute", function()
    assert(has_node, "node with a global WebSocket is required")
    local cfg = h.flat("sequential", { { id = "e", agent = "echo" } })
    cfg.name = "arr"
    local r = assert(client.request({ method = "POST", url = s.base .. "/api/v1/orchestrations/configs",
      headers = { ["content-type"] = "application/json" }, body = json.encode(cfg) }))
    assert.equal(201, r.status)
    for _, first in ipairs({ "[]", '[{"input": {}}]', "42", '"x"' }) do
      local res = c.node_result(c.node_ws(s, "/ws/execute/arr", { first }, 0))
      local e = json.decode(res.got[1])
      assert.equal("error", e.type, first)
      assert.equal("invalid_json", e.error.code, first)
      assert.equal(1, #res.got, first) -- nothing was started
    end
  end)
end)
