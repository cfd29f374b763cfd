-- chorus.llm.chat: one OpenAI-compatible chat completion for an agent
-- (agents/llm.lua, and handlers built on it): messages from templates
-- over the step input, the request, the answer (whole or streamed),
-- tokens and cost, and failures in the agent contract's terms.
--
--   call(input, ctx, params) -> output, meta | nil, message, info
--
-- params (the llm agent's; see docs/agents.md): base_url, model,
-- api_key_env, api_key_header (chorus.llm.endpoint), system, prompt
-- (templates), temperature, max_tokens, response_format ("text" |
-- "json"), stream, options (more body fields: top_p, seed...), headers
-- (more request headers, ${VAR} from the environment: secrets, as the
-- http agent's), max_response_bytes, request_timeout_ms.
--
-- output: {text, finish_reason} for text; the decoded value for "json"
-- (an answer that is not JSON fails the attempt with its first 200
-- characters; a ```json fence around it is accepted).
-- meta: {tokens, cost, prompt_tokens, completion_tokens, model,
-- finish_reason, usage_estimated = true (no usage from the server: 4
-- bytes a token), cost_note (no price for the model: cost 0)}.
-- failures: 429 and 5xx may be retried, honouring Retry-After; any other
-- status fails with the provider's own message and {retry = false}; the
-- key never appears in a message (a provider that echoes it is redacted).
local client = require "chorus.http.client"
local json = require "chorus.json"
local template = require "chorus.template"
local prices = require "chorus.llm.prices"
local failure = require "chorus.http.failure"
local endpoint = require "chorus.llm.endpoint"
local stream = require "chorus.llm.stream"
local http_call = require "chorus.http.call"
local log = require "chorus.log"

local type, pairs, tonumber, ceil = type, pairs, tonumber, math.ceil
local find, lower, match = string.find, string.lower, string.match
local render, encode, decode = template.render, json.encode, json.decode
local NO_RETRY = failure.NO_RETRY

local M = {}

M.DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
M.CONNECT_TIMEOUT_MS = 10000
-- What a prompt gets when JSON is asked for and no message says "json"
-- (OpenAI refuses json_object mode without the word).
M.JSON_HINT = "Answer with a single JSON object."

local JSON_FORMAT = { type = "json_object" }
local INCLUDE_USAGE = { include_usage = true }

-- messages(params, input) -> messages | nil, err
function M.messages(params, input)
  local msgs, n = {}, 0
  local err
  if params.system then
    local s
    s, err = render(params.system, input, "params.system")
    if not s then return nil, err end
    n = 1
    msgs[1] = { role = "system", content = s }
  end
  local p
  p, err = render(params.prompt, input, "params.prompt")
  if not p then return nil, err end
  msgs[n + 1] = { role = "user", content = p }
  if params.response_format == "json" then
    local said = false
    for i = 1, #msgs do
      if find(lower(msgs[i].content), "json", 1, true) then said = true end
    end
    if not said then
      if n == 1 then
        msgs[1].content = msgs[1].content .. "\n\n" .. M.JSON_HINT
      else
        table.insert(msgs, 1, { role = "system", content = M.JSON_HINT })
      end
    end
  end
  return msgs
end

function M.body(ep, params, msgs)
  local b = { model = ep.model, messages = msgs }
  if params.temperature ~= nil then b.temperature = params.temperature end
  if params.max_tokens ~= nil then b.max_tokens = params.max_tokens end
  if params.response_format == "json" then b.response_format = JSON_FORMAT end
  if params.stream then
    b.stream = true
    b.stream_options = INCLUDE_USAGE
  end
  local extra = params.options
  if type(extra) == "table" then
    for k, v in pairs(extra) do
      if b[k] == nil then b[k] = v end
    end
  end
  return b
end

-- Tokens of the prompt when the server does not say: 4 bytes a token,
-- plus the framing of each message.
local function estimate_prompt(msgs)
  local n = 0
  for i = 1, #msgs do n = n + 4 + ceil(#msgs[i].content / 4) end
  return n
end

-- The price entry of the answering model, else of the requested one.
local function price_of(answered, requested)
  return (answered and prices.lookup(answered)) or prices.lookup(requested)
end

local function meta_of(ep, st_model, usage, msgs, text, finish)
  local pt, ct, estimated
  if type(usage) == "table" and tonumber(usage.prompt_tokens) then
    pt, ct = tonumber(usage.prompt_tokens), tonumber(usage.completion_tokens) or 0
  else
    pt, ct, estimated = estimate_prompt(msgs), ceil(#text / 4), true
  end
  local model = type(st_model) == "string" and st_model or ep.model
  local entry = price_of(model, ep.model)
  local cost, note
  if entry then
    cost = (pt * entry.input + ct * entry.output) / 1e6
  else
    cost, note = prices.cost(model, pt, ct)
  end
  return { tokens = pt + ct, cost = cost, prompt_tokens = pt, completion_tokens = ct, model = model,
    finish_reason = finish, usage_estimated = estimated, cost_note = note }
end

-- The answer as the step's output.
local function output_of(params, text, finish)
  if params.response_format ~= "json" then
    return { text = text, finish_reason = finish }
  end
  local v, err = decode(text)
  if v == nil then
    local fenced = match(text, "^%s*```[%w_-]*%s*\n(.-)\n?%s*```%s*$")
    if fenced then v = decode(fenced) end
  end
  if v == nil then
    local why = finish == "length" and "cut at max_tokens, " or ""
    return nil, ("the answer is not JSON (%s%s): %s"):format(why, tostring(err), failure.snippet(text, 200))
  end
  return v
end

-- Logs a failed attempt with its trace ids, and returns it.
local failed = http_call.failed

-- The start of messages about a request to url (credentials and query
-- left out); only built when something failed.
local function where(url)
  return "llm: POST " .. failure.safe_url(url)
end

-- A whole (not streamed) answer: {choices[1].message.content, usage}.
local function whole(res, url)
  local doc = decode(res.body)
  if type(doc) ~= "table" then
    return nil, ("%s: the server's answer is not JSON (HTTP %d, %s): %s"):format(where(url), res.status,
      tostring(res.headers["content-type"] or "no content-type"), failure.snippet(res.body, 200))
  end
  local c = type(doc.choices) == "table" and doc.choices[1]
  local m = type(c) == "table" and c.message
  if type(m) ~= "table" then
    return nil, where(url) .. ": the answer has no choices[0].message: " .. failure.snippet(res.body, 200)
  end
  local text = m.content
  if type(text) ~= "string" then
    if type(m.refusal) == "string" then
      return nil, where(url) .. ": the model refused: " .. failure.snippet(m.refusal, 500), NO_RETRY
    end
    text = ""
  end
  return { text = text, finish = type(c.finish_reason) == "string" and c.finish_reason or nil,
    usage = doc.usage, model = doc.model }
end

function M.call(input, ctx, params)
  local ep, err = endpoint.resolve(params)
  if not ep then return nil, "llm: " .. err, NO_RETRY end
  local msgs
  msgs, err = M.messages(params, input)
  if not msgs then return nil, "llm: " .. err, NO_RETRY end
  local url = ep.chat_url
  local headers
  local secrets = ep.secrets
  if params.headers then
    secrets = { ep.key }
    headers, err = http_call.render_headers(params.headers, input, secrets)
    if not headers then return nil, "llm: " .. err, NO_RETRY end
  else
    headers = {}
  end
  local tp = ctx:traceparent()
  headers["content-type"] = "application/json"
  headers.traceparent = tp
  headers.accept = params.stream and "text/event-stream" or "application/json"
  endpoint.set_auth(ep, params, headers)
  local limit = params.max_response_bytes or M.DEFAULT_MAX_RESPONSE_BYTES
  local opts = { method = "POST", url = url, headers = headers, body = encode(M.body(ep, params, msgs)),
    timeout_ms = params.request_timeout_ms or 0, connect_timeout_ms = M.CONNECT_TIMEOUT_MS,
    max_body_bytes = limit }
  local st, info
  if params.stream then
    local s, kind
    s, err, kind = client.open(opts)
    if not s then
      local msg
      msg, info = failure.transport(where(url), err, kind)
      return failed(ctx, tp, failure.redact(msg, secrets), info)
    end
    if s.status < 200 or s.status > 299 or not find(s.headers["content-type"] or "", "text/event-stream", 1, true) then
      -- An error status, or a server that answered whole: read it all.
      local parts = {}
      while true do
        local chunk, rerr, rkind = s:read()
        if not chunk then
          if rerr then
            local msg
            msg, info = failure.transport(where(url), rerr, rkind)
            return failed(ctx, tp, failure.redact(msg, secrets), info)
          end
          break
        end
        parts[#parts + 1] = chunk
      end
      local res = { status = s.status, headers = s.headers, body = table.concat(parts) }
      if res.status < 200 or res.status > 299 then
        local msg
        msg, info = failure.status(where(url), res)
        return failed(ctx, tp, failure.redact(msg, secrets), info)
      end
      st, err, info = whole(res, url)
    else
      st, err, info = stream.read(s, ctx, { where = where(url), prompt_tokens = estimate_prompt(msgs),
        price = price_of(nil, ep.model), limit = limit })
    end
  else
    local res, kind
    res, err, kind = client.request(opts)
    if not res then
      local msg
      msg, info = failure.transport(where(url), err, kind)
      if kind == "too large" then
        msg = ("%s: the answer is larger than max_response_bytes (%d): %s"):format(where(url), limit, err)
      end
      return failed(ctx, tp, failure.redact(msg, secrets), info)
    end
    if res.status < 200 or res.status > 299 then
      local msg
      msg, info = failure.status(where(url), res)
      return failed(ctx, tp, failure.redact(msg, secrets), info)
    end
    st, err, info = whole(res, url)
  end
  if not st then return failed(ctx, tp, failure.redact(err, secrets), info) end
  local meta = meta_of(ep, st.model, st.usage, msgs, st.text, st.finish)
  if params.stream then ctx:usage({ tokens = meta.tokens, cost = meta.cost }) end
  local out
  out, err = output_of(params, st.text, st.finish)
  if out == nil then
    return failed(ctx, tp, failure.redact(where(url) .. ": " .. err, secrets),
      { tokens = meta.tokens, cost = meta.cost })
  end
  if log.level <= 1 then
    log.debug_with({ trace_id = ctx.trace_id, execution_id = ctx.execution_id, step_id = ctx.step_id,
      attempt = ctx.attempt, traceparent = tp, model = ep.model, tokens = meta.tokens },
      "llm: step %s attempt %d (trace %s, traceparent %s): %s, %d tokens", tostring(ctx.step_id),
      ctx.attempt or 0, tostring(ctx.trace_id), tp, ep.model, meta.tokens)
  end
  return out, meta
end

return M
