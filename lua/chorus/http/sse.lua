-- chorus.http.sse: an incremental parser of server-sent events (the
-- text/event-stream format of the WHATWG HTML standard, "Server-sent
-- events": what OpenAI-compatible servers stream).
--
--   local p = sse.new()
--   p:feed(chunk, on_event, arg)   -- any number of times, chunks cut anywhere
--     on_event(arg, data, event, id) for every complete event, in order:
--       data   the data lines joined with "\n"
--       event  the event type ("message" unless an event: line named one)
--       id     the last event id seen so far on the stream ("" if none)
--   p:feed_lines(lines, on_event, arg [, on_chat])   -- the same from lines
--     a stream's read_sse() split in C: {field1, value1, ...}, a blank
--     line as "", ""; with read_sse(true), an event whose data C read as
--     a chat completion chunk goes to on_chat(arg, content, finish_reason,
--     model) instead (the last two nil unless the chunk had them)
--   p:finish([cut_line]) -> true when the stream ended mid-event (bytes or
--     fields after the last blank line, which the standard discards), else
--     false
--   p.retry   the last valid retry: value (ms), or nil
--
-- The rules: lines end with CRLF, LF or CR (a CR at the end of one chunk
-- and an LF at the start of the next are one line end); a UTF-8 BOM at the
-- very start is skipped; a blank line dispatches the event being built,
-- unless it has no data; "field: value" drops one space after the colon, a
-- line without a colon is a field with an empty value, a line starting
-- with ':' is a comment; event, data, id (unless it contains NUL) and
-- retry (digits only) are the known fields, others are ignored. The
-- parser does not decode or check UTF-8: it hands bytes over as they are.
local find, sub, byte = string.find, string.sub, string.byte
local tonumber, setmetatable = tonumber, setmetatable

local M = {}

local Parser = {}
Parser.__index = Parser

local BOM = "\239\187\191"
local CR, LF, COLON, SPACE = 13, 10, 58, 32

function M.new()
  return setmetatable({
    partial = nil,   -- the start of a line cut by the end of a chunk
    skip_lf = false, -- the last chunk ended with CR: a leading LF is its pair
    started = false, -- the BOM check is done
    data = nil,      -- data of the event being built (nil: no data line yet)
    event = nil,     -- its event type
    id = "",         -- the last event id
    pending = false, -- a field line came since the last blank line
    retry = nil,
    -- An event whose data C read as a chat chunk: its fields, and a data
    -- line after it (which makes the event's data no longer JSON).
    chat = nil, chat_finish = nil, chat_model = nil, chat_extra = nil,
  }, Parser)
end

-- The event being built is dispatched (a blank line).
local function dispatch(self, on_event, arg, on_chat)
  local data, event, chat = self.data, self.event, self.chat
  self.data, self.event, self.pending = nil, nil, false
  if chat ~= nil then
    local extra = self.chat_extra
    self.chat, self.chat_extra = nil, nil
    -- A chunk is a whole JSON value: more data after it is not JSON,
    -- and is handed on as data that says so.
    if extra then return on_event(arg, "<a chat completion chunk>" .. extra, "message", self.id) end
    return on_chat(arg, chat, self.chat_finish, self.chat_model)
  end
  -- An empty event type is "message" too (WHATWG: only a type other
  -- than the empty string replaces it).
  if data ~= nil then on_event(arg, data, (event and event ~= "") and event or "message", self.id) end
end

-- A field line (field ~= "") or a blank one (field == ""): what it
-- means for the event being built. A number is a pseudo-line of a chat
-- chunk read in C (read_sse(true)): 1 content, 2 finish_reason, 3 model.
local function field_line(self, field, value, on_event, arg, on_chat)
  if field == "" then return dispatch(self, on_event, arg, on_chat) end
  self.pending = true
  if field == "data" then
    if self.chat ~= nil then
      -- Blank-only lines after a chunk change nothing (JSON whitespace).
      if find(value, "[^ \t]") then self.chat_extra = (self.chat_extra or "") .. "\n" .. value end
      return
    end
    local d = self.data
    if d == nil then self.data = value else self.data = d .. "\n" .. value end
  elseif field == 1 then
    self.chat, self.chat_finish, self.chat_model = value, nil, nil
  elseif field == 2 then
    self.chat_finish = value
  elseif field == 3 then
    self.chat_model = value
  elseif field == "event" then
    self.event = value
  elseif field == "id" then
    if not find(value, "\0", 1, true) then self.id = value end
  elseif field == "retry" then
    if find(value, "^%d+$") then self.retry = tonumber(value) end
  end
end

-- One line: bytes i..j of s (without its end). Read in place: a stream's
-- lines are long (an OpenAI chunk is ~250 bytes) and nearly alike, and
-- LuaJIT interns every string, hashing one of 128 bytes or more from a
-- few of its bytes: each extra copy of a line is a string whose interning
-- compares it with the other copies alive.
local function line(self, s, i, j, on_event, arg)
  if j < i then return field_line(self, "", nil, on_event, arg) end
  if byte(s, i) == COLON then return end -- a comment
  -- Anchored, so the search stops at the line's end.
  local _, colon = find(s, "^[^:\r\n]*:", i)
  if colon and colon > j then colon = nil end
  local fend = colon and colon - 1 or j
  -- Known names are short: a longer field is ignored unread.
  if fend - i > 4 then
    self.pending = true
    return
  end
  local value
  if colon then
    if byte(s, colon + 1) == SPACE and colon + 1 <= j then value = sub(s, colon + 2, j) else value = sub(s, colon + 1, j) end
  else
    value = ""
  end
  return field_line(self, sub(s, i, fend), value, on_event, arg)
end

-- p:feed_lines(lines, on_event, arg [, on_chat]): lines already split by
-- a stream's reader ({field1, value1, ...}, a blank line as "", "": a
-- stream's read_sse(), rt_sse_lines.h; chat chunks read in C as numbered
-- pseudo-lines with read_sse(true), for on_chat).
function Parser:feed_lines(lines, on_event, arg, on_chat)
  for k = 1, #lines, 2 do field_line(self, lines[k], lines[k + 1], on_event, arg, on_chat) end
end

-- p:feed(chunk, on_event, arg)
function Parser:feed(chunk, on_event, arg)
  local len = #chunk
  if len == 0 then return end
  local pos = 1
  if self.skip_lf then
    self.skip_lf = false
    if byte(chunk, 1) == LF then pos = 2 end
  end
  if not self.started then
    -- The BOM may itself be cut across chunks: wait for three bytes.
    local head = (self.partial or "") .. sub(chunk, pos)
    if #head < 3 and sub(BOM, 1, #head) == head then
      self.partial = head
      return
    end
    self.started = true
    if sub(head, 1, 3) == BOM then head = sub(head, 4) end
    self.partial = nil
    chunk, pos, len = head, 1, #head
  end
  while pos <= len do
    local e = find(chunk, "[\r\n]", pos)
    if not e then
      local rest = sub(chunk, pos)
      local p = self.partial
      if p then self.partial = p .. rest else self.partial = rest end
      return
    end
    local p = self.partial
    if p then
      local l = p .. sub(chunk, pos, e - 1)
      self.partial = nil
      line(self, l, 1, #l, on_event, arg)
    else
      line(self, chunk, pos, e - 1, on_event, arg)
    end
    if byte(chunk, e) == CR then
      if e == len then
        self.skip_lf = true
        pos = e + 1
      elseif byte(chunk, e + 1) == LF then
        pos = e + 2
      else
        pos = e + 1
      end
    else
      pos = e + 1
    end
  end
end

-- p:finish([cut_line]) -> true when the stream was cut inside an event
-- (cut_line: the reader that split the lines was left with part of one)
function Parser:finish(cut_line)
  local cut = self.pending or (self.partial ~= nil and self.partial ~= "") or cut_line == true
  self.partial, self.data, self.event, self.pending = nil, nil, nil, false
  self.chat, self.chat_extra = nil, nil
  return cut
end

return M
