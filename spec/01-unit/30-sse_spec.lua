-- chorus.http.sse: the WHATWG event-stream rules, fed whole and cut at
-- every byte.
local sse = require "chorus.http.sse"

-- Parses text fed in pieces of `step` bytes (all at once when nil).
local function parse(text, step)
  local p, out = sse.new(), {}
  local function on(acc, data, event, id) acc[#acc + 1] = { data = data, event = event, id = id } end
  step = step or #text
  for i = 1, #text, step do p:feed(text:sub(i, i + step - 1), on, out) end
  return out, p:finish(), p
end

-- The same events whatever the cut.
local function same_every_cut(text)
  local whole, cut_whole = parse(text)
  for step = 1, math.min(#text, 9) do
    local got, cut = parse(text, step)
    assert.same(whole, got, "cut every " .. step .. " bytes")
    assert.equal(cut_whole, cut)
  end
  return whole, cut_whole
end

describe("chorus.http.sse", function()
  it("parses data events and ignores comments", function()
    local ev = same_every_cut(": keep-alive\n\ndata: {\"a\":1}\n\ndata: two\n\n")
    assert.same({ { data = '{"a":1}', event = "message", id = "" },
                  { data = "two", event = "message", id = "" } }, ev)
  end)

  it("joins data lines with \\n and takes event and id", function()
    local ev = same_every_cut("event: delta\nid: 7\ndata: first\ndata:second\ndata\n\ndata: x\n\n")
    assert.same({ { data = "first\nsecond\n", event = "delta", id = "7" },
                  { data = "x", event = "message", id = "7" } }, ev)
  end)

  it("accepts CRLF, LF and CR line ends, mixed, and a CRLF cut between reads", function()
    local text = "data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n"
    local ev = same_every_cut(text)
    assert.same({ "a", "b", "c", "d" }, { ev[1].data, ev[2].data, ev[3].data, ev[4].data })
    -- CR then LF in two reads is one line end, not a blank line
    local p, got = sse.new(), {}
    local function on(acc, data) acc[#acc + 1] = data end
    p:feed("data: one\r", on, got)
    p:feed("\ndata: two\r\n\r\n", on, got)
    assert.same({ "one\ntwo" }, got)
  end)

  it("drops exactly one space after the colon", function()
    local ev = same_every_cut("data:  two spaces\n\ndata:none\n\n")
    assert.equal(" two spaces", ev[1].data)
    assert.equal("none", ev[2].data)
  end)

  it("skips a BOM at the start only, even cut across reads", function()
    local ev = same_every_cut("\239\187\191data: x\n\ndata: \239\187\191y\n\n")
    assert.equal("x", ev[1].data)
    assert.equal("\239\187\191y", ev[2].data)
  end)

  it("does not dispatch an event without data, and resets the event type", function()
    local ev = same_every_cut("event: ping\n\ndata: after\n\n")
    assert.same({ { data = "after", event = "message", id = "" } }, ev)
  end)

  it("ignores an id containing NUL and unknown fields; keeps a numeric retry", function()
    local ev, _, p = parse("id: 1\nretry: 2500\nfoo: bar\ndata: a\n\nid: x\0y\nretry: 3s\ndata: b\n\n")
    assert.equal("1", ev[1].id)
    assert.equal("1", ev[2].id)
    assert.equal(2500, p.retry)
    -- an empty id resets it
    ev = parse("id: 5\ndata: a\n\nid\ndata: b\n\n")
    assert.equal("5", ev[1].id)
    assert.equal("", ev[2].id)
  end)

  -- Lines are read in place in the chunk: a field's name and value end
  -- at their own line, whatever follows.
  it("reads each field within its own line", function()
    local ev = same_every_cut("xdata\ndata\ndatax: no\nda:ta\ndata:a:b\n:data: c\n\n"
      .. "data: \ndata:  two\nevent\ndata\n\n")
    assert.same({ { data = "\na:b", event = "message", id = "" },
                  { data = "\n two\n", event = "message", id = "" } }, ev)
    -- Many lines without a colon in one chunk, then one with.
    ev = parse(string.rep("x\n", 100000) .. "data: last\n\n")
    assert.same({ { data = "last", event = "message", id = "" } }, ev)
  end)

  it("says when the stream ended inside an event (which is discarded)", function()
    local ev, cut = same_every_cut("data: done\n\ndata: half")
    assert.same({ "done" }, { ev[1].data })
    assert.equal(1, #ev)
    assert.is_true(cut)
    ev, cut = same_every_cut("data: done\n\ndata: whole line\n")
    assert.equal(1, #ev)
    assert.is_true(cut)
    ev, cut = same_every_cut("data: done\n\n: a comment\n")
    assert.equal(1, #ev)
    assert.is_false(cut)
  end)

  it("parses a large OpenAI-style stream in pieces of any size", function()
    local parts = {}
    for i = 1, 500 do
      parts[#parts + 1] = ('data: {"choices":[{"index":0,"delta":{"content":"w%d "}}]}\n\n'):format(i)
    end
    parts[#parts + 1] = "data: [DONE]\n\n"
    local text = table.concat(parts)
    for _, step in ipairs({ 1, 7, 100, 4096, #text }) do
      local ev = parse(text, step)
      assert.equal(501, #ev)
      assert.equal("[DONE]", ev[501].data)
      assert.truthy(ev[250].data:find('"w250 "', 1, true))
    end
  end)

  -- read_sse(true)'s pseudo-lines: 1 content, 2 finish_reason, 3 model.
  it("hands chunks C read to on_chat, at the event's end, and keeps cuts", function()
    local got = {}
    local function on_event(acc, data) acc[#acc + 1] = { "event", data } end
    local function on_chat(acc, c, f, m) acc[#acc + 1] = { "chat", c, f, m } end
    local p = sse.new()
    p:feed_lines({ 1, "Hi", 3, "m" }, on_event, got, on_chat)
    assert.same({}, got) -- not before the blank line
    p:feed_lines({ "data", " ", "", "", 1, "", 2, "stop", "", "" }, on_event, got, on_chat)
    assert.same({ { "chat", "Hi", nil, "m" }, { "chat", "", "stop", nil } }, got)
    -- More data after a chunk: the event's data is no longer JSON.
    p:feed_lines({ 1, "x", "data", "tail", "", "" }, on_event, got, on_chat)
    assert.same({ "event", "<a chat completion chunk>\ntail" }, got[3])
    -- A chunk the stream ends inside (no blank line) is a cut, not an event.
    p:feed_lines({ 1, "lost" }, on_event, got, on_chat)
    assert.is_true(p:finish())
    assert.equal(3, #got)
  end)
end)
