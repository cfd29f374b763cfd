-- chorus.llm.stream: reads a streamed chat completion (server-sent
-- chat.completion.chunk events) as it arrives: every content delta goes
-- to ctx:delta, the running usage to ctx:usage, and the pieces are kept
-- for the whole answer.
--
--   read(s, ctx, run) -> st | nil, message, info
--     s    an open chorus.http.client stream (status 2xx, event-stream)
--     run  {where = "llm: POST url", prompt_tokens = estimate,
--           price = prices entry or nil, limit = max_response_bytes}
--     st   {text, finish, usage (the server's, or nil), model, pieces}
-- The answer is complete when the server said [DONE] or gave a
-- finish_reason and ended the body; a body that ends otherwise, or breaks,
-- is a stream cut mid-answer (a retry may help; info carries the tokens
-- the attempt used so far, estimated). An error event ({"error": {...}})
-- fails the attempt with the provider's message.
local sse = require "chorus.http.sse"
local json = require "chorus.json"
local failure = require "chorus.http.failure"
local sleep = require("chorus.sched").sleep

local type, tonumber, concat, ceil = type, tonumber, table.concat, math.ceil
local decode = json.decode

local M = {}

-- Running usage goes to ctx:usage about every this many answer bytes
-- (~64 tokens), and when the server's usage arrives.
local USAGE_EVERY_BYTES = 256

-- fields(ev) -> content, finish_reason, model, usage, error: what a
-- decoded chunk carries (each nil unless of its type: strings; usage a
-- table with a number of prompt tokens; error anything but nil).
function M.fields(ev)
  local choices, c, d = ev.choices, nil, nil
  if type(choices) == "table" then c = choices[1] end
  if type(c) == "table" then d = c.delta end
  local content = type(d) == "table" and d.content or nil
  local finish = type(c) == "table" and c.finish_reason or nil
  local model, u = ev.model, ev.usage
  return type(content) == "string" and content or nil, type(finish) == "string" and finish or nil,
    type(model) == "string" and model or nil, type(u) == "table" and tonumber(u.prompt_tokens) and u or nil, ev.error
end

-- answered(st): the answer is whole (a finish_reason, or [DONE]). Its
-- last pieces go out first (the loop turn's flusher, queued already),
-- before the usage chunk that usually comes in the same read and the rest
-- of the work on the answer, which many answers ending at once would
-- stack up in front of them.
local function answered(st)
  if st.ended then return end
  st.ended = true
  sleep(0)
end

-- A piece of the answer, how it finished, the model: from a chunk read
-- in C (chorus.http.sse's on_chat), or one decoded whole.
local function on_chat(st, content, finish, model)
  if st.failed then return end
  if content and content ~= "" then
    local n = st.n + 1
    st.parts[n], st.n = content, n
    st.bytes = st.bytes + #content
    st.ctx:delta(content)
  end
  if st.model == nil and model then st.model = model end
  if finish then
    st.finish = finish
    return answered(st)
  end
end

-- An event C did not read as a chunk (runtime/rt_chat_chunk.h answers
-- only when a whole decode would say the same): the usage chunk, an
-- error, [DONE], anything unusual.
local function on_event(st, data)
  if st.failed then return end
  if data == "[DONE]" then
    st.done = true
    return answered(st)
  end
  local ev = decode(data)
  if type(ev) ~= "table" then
    st.failed = "an event that is not JSON: " .. failure.snippet(data)
    return
  end
  local content, finish, model, usage, e = M.fields(ev)
  if e ~= nil then
    st.failed = "the server reported an error mid-stream: "
      .. failure.snippet(type(e) == "table" and e.message or tostring(e), 500)
    return
  end
  if usage then st.usage = usage end
  return on_chat(st, content, finish, model)
end

-- What the attempt used so far: the server's usage, else an estimate.
function M.usage_now(st, run)
  local u = st.usage
  local pt, ct
  if u then
    pt, ct = tonumber(u.prompt_tokens) or 0, tonumber(u.completion_tokens) or 0
  else
    pt, ct = run.prompt_tokens, ceil(st.bytes / 4)
  end
  local p = run.price
  local cost = p and (pt * p.input + ct * p.output) / 1e6 or 0
  return pt + ct, cost, pt, ct
end

local function report(st, run)
  local tokens, cost = M.usage_now(st, run)
  st.ctx:usage({ tokens = tokens, cost = cost })
  st.reported = st.bytes
end

local function spent(st, run)
  local tokens, cost = M.usage_now(st, run)
  return { tokens = tokens, cost = cost }
end

function M.read(s, ctx, run)
  local p = sse.new()
  local st = { ctx = ctx, parts = {}, n = 0, bytes = 0, reported = 0, done = false }
  local had_usage = false
  local cut_line
  while true do
    -- Lines split in C, and chunks read there (chorus.http.client's
    -- read_sse(true)): an OpenAI stream's lines are long and alike, and
    -- LuaJIT would intern each one as a string and decode it into tables;
    -- here only each piece of answer becomes a string.
    local lines, err, kind = s:read_sse(true)
    if lines == false then
      cut_line = err
      break
    end
    if not lines then
      s:close()
      if kind == "timeout" or kind == "cancelled" then return nil, kind, spent(st, run) end
      if kind == "too large" then
        return nil, ("%s: the answer is larger than max_response_bytes (%d)"):format(run.where, run.limit),
          { retry = false, tokens = spent(st, run).tokens }
      end
      return nil, ("%s: the stream was cut mid-answer (after %d bytes of answer): %s")
        :format(run.where, st.bytes, err), spent(st, run)
    end
    p:feed_lines(lines, on_event, st, on_chat)
    if st.failed then
      s:close()
      return nil, run.where .. ": " .. st.failed, spent(st, run)
    end
    if st.usage and not had_usage then
      had_usage = true
      report(st, run)
    elseif not had_usage and st.bytes - st.reported >= USAGE_EVERY_BYTES then
      report(st, run)
    end
  end
  s:close()
  p:finish(cut_line)
  if not st.done and not st.finish then
    return nil, ("%s: the stream ended before the answer was complete (after %d bytes of answer, "
      .. "no finish_reason and no [DONE])"):format(run.where, st.bytes), spent(st, run)
  end
  st.text = concat(st.parts)
  return st
end

return M
