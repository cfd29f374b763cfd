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

local type, tonumber, concat, ceil = type, tonumber, table.concat, math.ceil
local decode = json.decode

local M = {}

-- Running usage goes to ctx:usage about every this many answer bytes
-- (~64 tokens), and when the server's usage arrives.
local USAGE_EVERY_BYTES = 256

local function on_event(st, data)
  if st.failed then return end
  if data == "[DONE]" then
    st.done = true
    return
  end
  local ev = decode(data)
  if type(ev) ~= "table" then
    st.failed = "an event that is not JSON: " .. failure.snippet(data)
    return
  end
  local e = ev.error
  if e ~= nil then
    st.failed = "the server reported an error mid-stream: "
      .. failure.snippet(type(e) == "table" and e.message or tostring(e), 500)
    return
  end
  local choices = ev.choices
  if type(choices) == "table" then
    local c = choices[1]
    if type(c) == "table" then
      local d = c.delta
      if type(d) == "table" then
        local content = d.content
        if type(content) == "string" and content ~= "" then
          local n = st.n + 1
          st.parts[n], st.n = content, n
          st.bytes = st.bytes + #content
          st.ctx:delta(content)
        end
      end
      local fr = c.finish_reason
      if type(fr) == "string" then st.finish = fr end
    end
  end
  local u = ev.usage
  if type(u) == "table" and tonumber(u.prompt_tokens) then st.usage = u end
  if st.model == nil and type(ev.model) == "string" then st.model = ev.model end
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
    -- Lines split in C: an OpenAI stream's lines are long and alike, and
    -- LuaJIT would intern each piece read and each line as strings
    -- (chorus.http.sse); here only each value is one.
    local lines, err, kind = s:read_sse()
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
    p:feed_lines(lines, on_event, st)
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
