-- native.chat_chunk (runtime/rt_chat_chunk.c): a streamed chat completion
-- chunk's content, finish_reason and model read from its text. It must
-- agree with a whole decode through chorus.json whenever it answers, and
-- answer for the chunks servers really send.
local native = require "chorus.native"
local json = require "chorus.json"
local stream = require "chorus.llm.stream"

local chat_chunk = native.chat_chunk

-- What chorus.llm.stream reads from a chunk decoded whole; nil where the
-- fast path must not answer (an error or a usage member).
local function by_decode(text)
  local ev = json.decode(text)
  if type(ev) ~= "table" then return nil end
  local content, finish, model, usage, err = stream.fields(ev)
  if err ~= nil or usage ~= nil or (ev.usage ~= nil and ev.usage ~= json.null) then return nil end
  return { content = content, finish = finish, model = model }
end

local function by_text(text)
  local fast, content, finish, model = chat_chunk(text)
  if not fast then return nil end
  return { content = content, finish = finish, model = model }
end

local function chunk(content, finish, extra)
  return ('{"id":"chatcmpl-9a8b","object":"chat.completion.chunk","created":1733312000,'
    .. '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1",'
    .. '"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]%s}')
    :format(content and ('{"content":%s}'):format(json.encode(content)) or "{}",
      finish and json.encode(finish) or "null", extra or "")
end

describe("native.chat_chunk", function()
  it("reads the chunks OpenAI-compatible servers send", function()
    assert.same({ content = "Hello", model = "gpt-4o-mini-2024-07-18" }, by_text(chunk("Hello")))
    assert.same({ finish = "stop", model = "gpt-4o-mini-2024-07-18" }, by_text(chunk(nil, "stop")))
    -- The role chunk that opens a stream, and usage: null on the others.
    assert.same({ content = "", model = "m" }, by_text('{"model":"m","choices":[{"index":0,'
      .. '"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}'))
    -- Whitespace and escapes as Python's json.dumps writes them (ensure_ascii).
    assert.same({ content = 'caf\195\169 \240\159\152\128 "q"\n\\/' },
      by_text('{ "choices" : [ { "delta" : { "content" : "caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n\\\\\\/" } } ] }\r\n'))
    -- Raw UTF-8 is passed as it is, as a decode does.
    assert.same({ content = "na\195\175ve" }, by_text('{"choices":[{"delta":{"content":"na\195\175ve"}}]}'))
  end)

  it("leaves to a whole decode what it does not read", function()
    for _, text in ipairs({
      '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
      '{"error":{"message":"rate limited","type":"requests"}}',
      '{"error":null,"choices":[]}',
      '{"choices":[{"delta":{"content":"a","content":"b"}}]}',
      '{"choices":[{"delta":{"content":"a"},"delta":{}}]}',
      '{"model":"a","model":"b"}',
      '{"choi\\u0063es":[{"delta":{"content":"x"}}]}',
      '{"created":1e400,"choices":[]}',
      '{"created":-1' .. ("0"):rep(400) .. ',"choices":[]}',
      '{"choices":[{"delta":{"content":"\\ud800"}}]}',
      '{"choices":[{"delta":{"content":"\\udc00\\ud800"}}]}',
      '{"choices":[{"delta":{"content":"\\x41"}}]}',
      '{"choices":[{"delta":{"content":"a\0b"}}]}',
      '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":+1}', '{"a":0x10}', '{"a":NaN}', '{"a":1,}', '{,}',
      '{"a":1} x', '[1]', '"text"', '', '   ', '{"a":tru}', '{"a":[1,2}', '{"a" 1}',
      ("["):rep(70) .. ("]"):rep(70),
    }) do
      assert.is_false((chat_chunk(text)), text)
    end
  end)

  it("reads nothing from choices or a delta that is not a table of the usual shape", function()
    assert.same({}, by_text('{"choices":{"1":{"delta":{"content":"x"}}}}'))
    assert.same({}, by_text('{"choices":[[{"delta":{"content":"x"}}]]}'))
    assert.same({}, by_text('{"choices":[{"delta":["x"]}]}'))
    assert.same({}, by_text('{"choices":[{"delta":{"content":5}},{"delta":{"content":"second"}}]}'))
    assert.same({}, by_text('{"choices":[{"delta":{"content":null},"finish_reason":7}],"model":{}}'))
    assert.same({ content = "deep" }, by_text('{"x":' .. ('{"y":'):rep(30) .. '1' .. ("}"):rep(30)
      .. ',"choices":[{"delta":{"content":"deep","content_filter":{"content":"no"}}}]}'))
  end)

  it("agrees with a whole decode on 20,000 random and mutated chunks", function()
    math.randomseed(1234)
    local pieces = { "a", " ", "\\n", "\\\"", "\\\\", "\\/", "\\t", "\\u00e9", "\\ud83d\\ude00", "\\u0000",
      "\195\169", "\226\130\172", "{", "}", "[", "]", ":", ",", '"', "0", "-1.5e3", "null", "true" }
    local function rand_content()
      local t = {}
      for i = 1, math.random(0, 6) do t[i] = pieces[math.random(#pieces)] end
      return table.concat(t)
    end
    local junk = { "{", "}", "[", "]", ",", ":", '"', "\\", "u", "0", "1e999", "-", ".", "e", " ", "\0",
      '"content":"z",', '"usage":null,', '"error":1,', '"model":"x",', "\\ud800", "null", "\255" }
    local answered, checked = 0, 0
    for _ = 1, 20000 do
      local text = ('{"id":"c","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":%s}],'
        .. '"created":%d,"model":"m%d"%s}'):format(rand_content(),
          math.random(3) == 1 and '"stop"' or "null", math.random(0, 2 ^ 31), math.random(9),
          math.random(4) == 1 and ',"usage":null' or "")
      -- Up to three mutations: a byte changed, junk put in, a cut.
      for _ = 1, math.random(0, 3) do
        local at = math.random(1, #text)
        local m = math.random(3)
        if m == 1 then
          text = text:sub(1, at - 1) .. string.char(math.random(0, 255)) .. text:sub(at + 1)
        elseif m == 2 then
          text = text:sub(1, at - 1) .. junk[math.random(#junk)] .. text:sub(at)
        else
          text = text:sub(1, at)
        end
      end
      local fast = by_text(text)
      if fast then
        answered = answered + 1
        assert.same(by_decode(text), fast, text)
      end
      checked = checked + 1
    end
    -- A third or so of the texts survive their mutations as JSON; the fast
    -- path must have answered for a good share of them.
    assert.is_true(answered > 3000, "answered " .. answered .. " of " .. checked)
  end)
end)
