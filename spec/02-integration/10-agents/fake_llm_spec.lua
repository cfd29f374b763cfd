-- fakes/llm.lua keeps to the OpenAI wire format the adapters expect:
-- chat.completion and chat.completion.chunk shapes, the usage chunk and
-- [DONE], error bodies, the bearer key, models, deterministic embeddings;
-- and it runs as a command that prints its URL.
local fake_llm = require "fakes.llm"
local client = require "chorus.http.client"
local sse = require "chorus.http.sse"
local json = require "chorus.json"
local h = require "spec.helpers"
local c = require "spec.support.clients"

local fake
local KEY = "sk-fake-spec-key"
local AUTH = { authorization = "Bearer " .. KEY }

local function post(path, body, headers)
  local hd = { authorization = AUTH.authorization }
  for k, v in pairs(headers or {}) do hd[k] = v end
  return assert(client.post_json(fake.url .. path, body, { headers = hd }))
end

local function events_of(body)
  local p, out = sse.new(), {}
  p:feed(body, function(acc, data) acc[#acc + 1] = data end, out)
  return out
end

describe("fakes/llm.lua", function()
  setup(function() fake = assert(fake_llm.start({ port = 0, api_key = KEY })) end)
  teardown(function() if fake then fake:close() end end)

  it("answers a chat completion in OpenAI's shape, usage counted from the text", function()
    local res = post("/chat/completions", { model = "chorus-sim", messages = {
      { role = "user", content = "log:\nok\nABEND S0C7 in step 2" } } })
    assert.equal(200, res.status)
    local b = res.json
    assert.equal("chat.completion", b.object)
    assert.truthy(b.id:match("^chatcmpl%-"))
    assert.equal("chorus-sim", b.model)
    assert.equal("assistant", b.choices[1].message.role)
    assert.truthy(b.choices[1].message.content:find("Most likely cause: ABEND S0C7 in step 2 (line 3)", 1, true))
    assert.equal("stop", b.choices[1].finish_reason)
    assert.equal(b.usage.prompt_tokens + b.usage.completion_tokens, b.usage.total_tokens)
    -- max_tokens cuts the answer: finish_reason "length"
    res = post("/chat/completions", { model = "chorus-sim", max_tokens = 2, messages = {
      { role = "user", content = "a long question about many things" } } })
    assert.equal("length", res.json.choices[1].finish_reason)
    assert.equal(2, res.json.usage.completion_tokens)
  end)

  it("streams chunks: a role first, content deltas, finish_reason, the usage chunk, then [DONE]", function()
    local res = post("/chat/completions", { model = "chorus-sim", stream = true,
      stream_options = { include_usage = true }, messages = { { role = "user", content = "hello there" } } })
    assert.equal(200, res.status)
    assert.truthy(res.headers["content-type"]:find("text/event-stream", 1, true))
    local ev = events_of(res.body)
    assert.equal("[DONE]", ev[#ev])
    local first = json.decode(ev[1])
    assert.equal("chat.completion.chunk", first.object)
    assert.same({ role = "assistant", content = "" }, first.choices[1].delta)
    assert.equal(json.null, first.usage)
    local usage = json.decode(ev[#ev - 1])
    assert.same({}, usage.choices)
    assert.is_true(usage.usage.total_tokens > 0)
    assert.equal("stop", json.decode(ev[#ev - 2]).choices[1].finish_reason)
    local text = {}
    for i = 2, #ev - 3 do text[#text + 1] = json.decode(ev[i]).choices[1].delta.content end
    assert.equal("You asked: hello there", table.concat(text))
    -- without include_usage: no usage chunk, no usage field
    res = post("/chat/completions", { model = "chorus-sim", stream = true, messages = { { role = "user", content = "x" } } })
    ev = events_of(res.body)
    assert.is_nil(json.decode(ev[#ev - 1]).usage)
    assert.equal("stop", json.decode(ev[#ev - 1]).choices[1].finish_reason)
  end)

  -- bench/agents: stamped pieces, a time to first token, then token_ms apart
  it("streams stamped pieces after x-fake-first-ms, then x-fake-token-ms apart", function()
    local native = require "chorus.native"
    local t0 = native.time() * 1000
    local res = post("/chat/completions", { model = "chorus-sim", stream = true,
      messages = { { role = "user", content = "x" } } },
      { ["x-fake-stamps"] = "3", ["x-fake-first-ms"] = "150", ["x-fake-token-ms"] = "10" })
    assert.equal(200, res.status)
    local stamps = {}
    for _, data in ipairs(events_of(res.body)) do
      local ev = data ~= "[DONE]" and json.decode(data)
      local content = ev and ev.choices[1] and ev.choices[1].delta.content
      if content and content ~= "" then stamps[#stamps + 1] = tonumber(content:match("^@([%d%.]+) $")) end
    end
    assert.equal(3, #stamps)
    assert.is_true(stamps[1] - t0 >= 145, "first piece after " .. (stamps[1] - t0) .. " ms")
    assert.is_true(stamps[2] - stamps[1] >= 9 and stamps[2] - stamps[1] < 140, "then " .. (stamps[2] - stamps[1]))
  end)

  it("checks the key and the request like the real service", function()
    local res = assert(client.get(fake.url .. "/models"))
    assert.equal(401, res.status)
    assert.truthy(json.decode(res.body).error.message:find("You didn't provide an API key", 1, true))
    res = post("/chat/completions", { model = "m", messages = { { role = "user", content = "x" } } },
      { authorization = "Bearer nope" })
    assert.equal(401, res.status)
    assert.equal("invalid_api_key", res.json.error.code)
    for _, case in ipairs({
      { {}, "you must provide a model parameter" },
      { { model = "m" }, "Missing required parameter: 'messages'." },
      { { model = "m", messages = json.array({}) }, "Invalid 'messages': empty array." },
      { { model = "m", messages = { { role = "robot", content = "x" } } }, "Invalid value: 'robot'." },
      { { model = "m", temperature = 3, messages = { { role = "user", content = "x" } } }, "Invalid 'temperature'" },
      { { model = "m", stream_options = { include_usage = true }, messages = { { role = "user", content = "x" } } },
        "only allowed when 'stream' is enabled" },
      { { model = "m", response_format = { type = "json_object" }, messages = { { role = "user", content = "x" } } },
        "must contain the word 'json'" },
    }) do
      res = post("/chat/completions", case[1])
      assert.equal(400, res.status)
      assert.truthy(res.json.error.message:find(case[2], 1, true), res.json.error.message)
      assert.equal("invalid_request_error", res.json.error.type)
    end
    res = assert(client.request({ method = "POST", url = fake.url .. "/chat/completions", headers = AUTH, body = "{no" }))
    assert.equal(400, res.status)
    res = post("/nothing", {})
    assert.equal(404, res.status)
    assert.equal("Invalid URL (POST /v1/nothing)", res.json.error.message)
  end)

  it("lists models", function()
    local res = assert(client.get(fake.url .. "/models", { headers = AUTH }))
    local doc = json.decode(res.body)
    assert.equal("list", doc.object)
    assert.equal("chorus-sim", doc.data[1].id)
    assert.equal("model", doc.data[1].object)
    res = assert(client.get(fake.url .. "/models/chorus-sim", { headers = AUTH }))
    assert.equal("chorus-sim", json.decode(res.body).id)
  end)

  it("embeds deterministically: unit vectors, closer for texts sharing words", function()
    local res = post("/embeddings", { model = "chorus-embed", input = {
      "payroll job abended with a deadlock", "the payroll job abended", "weather is sunny today" } })
    assert.equal(200, res.status)
    local d = res.json.data
    assert.equal("list", res.json.object)
    assert.equal(3, #d)
    assert.equal("embedding", d[1].object)
    assert.equal(64, #d[1].embedding)
    local function dot(a, b)
      local s = 0
      for i = 1, #a do s = s + a[i] * b[i] end
      return s
    end
    assert.near(1, dot(d[1].embedding, d[1].embedding), 1e-9)
    assert.is_true(dot(d[1].embedding, d[2].embedding) > dot(d[1].embedding, d[3].embedding))
    local again = post("/embeddings", { model = "chorus-embed", input = "payroll job abended with a deadlock",
      dimensions = 64 })
    assert.same(d[1].embedding, again.json.data[1].embedding)
    assert.is_true(res.json.usage.prompt_tokens > 0)
    res = post("/embeddings", { model = "chorus-embed", input = "x", dimensions = 8 })
    assert.equal(8, #res.json.data[1].embedding)
    assert.equal(400, post("/embeddings", { model = "chorus-embed" }).status)
    assert.equal(400, post("/embeddings", { model = "chorus-embed", input = { "" } }).status)
  end)

  it("runs as a command that prints its URL and stops on SIGTERM", function()
    local log = os.tmpname()
    local pid = h.spawn(("env SPEC_FAKE_KEY=k123 %s lua %s/fakes/llm.lua --port 0 --api-key-env SPEC_FAKE_KEY")
      :format(h.binary, h.root), log)
    local url
    assert.is_true(h.wait_until(function()
      url = (c.slurp(log) or ""):match("(http://127%.0%.0%.1:%d+/v1)")
      return url ~= nil
    end, 10000))
    local res = assert(client.get(url .. "/models", { headers = { authorization = "Bearer k123" } }))
    assert.equal(200, res.status)
    h.kill(pid)
    assert.is_true(h.wait_exit(pid, 5000))
    local code, _, err = h.sh(h.binary .. " lua " .. h.root .. "/fakes/llm.lua --api-key-env CHORUS_SPEC_UNSET")
    assert.equal(2, code)
    assert.truthy(err:find("CHORUS_SPEC_UNSET is not set", 1, true))
  end)
end)
