-- fakes/llm.lua: a small OpenAI-compatible server for the demo and the
-- specs, on Chorus's own HTTP server. It speaks the real protocol, so the
-- llm agent runs its real code path against it over real HTTP:
--
--   POST /v1/chat/completions   chat.completion, or with stream = true
--                               server-sent chat.completion.chunk events
--                               (delta, finish_reason, a usage chunk with
--                               stream_options.include_usage, data: [DONE])
--   POST /v1/embeddings         deterministic vectors (hashed words)
--   GET  /v1/models, /v1/models/{id}
--   errors as {"error": {"message", "type", "param", "code"}}; a bearer
--   key is checked when the server has one (401 otherwise; the message
--   quotes the key it was given, in full where the real service masks
--   it, so that specs see a client redact it).
--
-- The answers come from fakes/llm/model.lua (deterministic: they quote
-- the error lines of a log, summarise passages, fill a JSON example).
-- Behaviours for tests are chosen by the model name, or by the header
-- x-fake-behavior (which wins):
--   fake-429          429 with Retry-After (x-fake-retry-after: seconds or
--                     an HTTP date; 1 by default; x-fake-retry-after-ms: N
--                     sends retry-after-ms: N as OpenAI does, and the
--                     seconds rounded up)
--   fake-429-once     429 the first time a given prompt is seen, then fine
--   fake-500, fake-500-once   the same with a 500
--   fake-400          a 400 with the provider's own message
--   fake-not-json     a prose answer even when JSON was asked for
--   fake-garbage      a 200 whose body is an HTML error page
--   fake-cut          the answer stops halfway: the stream (or body) is cut
--   fake-slow         token_ms (50; x-fake-token-ms) between streamed tokens
--   (header x-fake-stamps: N) a stream of N pieces "@<wall-clock ms> ",
--                     each stamped as it is written (bench/agents)
--   (header x-fake-first-ms: N) N ms before a stream's first piece (a
--                     model's time to first token; token_ms otherwise)
--   (header x-fake-first-jitter-ms: J) plus 0 to J ms more, drawn for each
--                     stream (a real model's time to first token varies:
--                     streams of one burst of requests are not in step)
--   fake-huge         a 10 MB answer
--   fake-no-usage     a stream without the usage chunk
--
-- Run it: build/chorus lua fakes/llm.lua [--port N] [--host H]
--   [--api-key-env NAME] [--token-ms N]   (prints its base URL, serves until
--   SIGTERM/SIGINT; port 0, the default, picks a free one). The key is read
--   from the environment variable NAME, never from the command line.
-- From Lua (the repository root on package.path, as for specs):
--   local fake = require "fakes.llm"
--   local srv = assert(fake.start({ port = 0, api_key = "..." }))
--   srv.url (".../v1"), srv.requests (the last 200: method, path,
--   headers, body), srv:close()
local server = require "chorus.http.server"
local native = require "chorus.native"
local sched = require "chorus.sched"
local json = require "chorus.json"

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local model = dofile(here .. "/llm/model.lua")

local M = {}

M.MODELS = { "chorus-sim", "chorus-sim-mini", "chorus-embed" }
local BEHAVIORS = {
  ["fake-429"] = true, ["fake-429-once"] = true, ["fake-500"] = true, ["fake-500-once"] = true,
  ["fake-400"] = true, ["fake-not-json"] = true, ["fake-garbage"] = true, ["fake-cut"] = true,
  ["fake-slow"] = true, ["fake-huge"] = true, ["fake-no-usage"] = true,
}
local HUGE_BYTES = 10 * 1024 * 1024
local MAX_RECORDED = 200

local JSON_TYPE = { ["content-type"] = "application/json" }

local function err_body(message, etype, code, param)
  return { error = { message = message, type = etype or "invalid_request_error",
    param = param or json.null, code = code or json.null } }
end

local function fail(status, message, etype, code, param, headers)
  local h = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return status, h, json.encode(err_body(message, etype, code, param))
end

local Fake = {}
Fake.__index = Fake

local function request_id(self)
  self.seq = self.seq + 1
  return ("req_%08x%06d"):format(native.pid and native.pid() or 0, self.seq)
end

local function record(self, req, decoded)
  local r = self.requests
  if #r >= MAX_RECORDED then table.remove(r, 1) end
  r[#r + 1] = { method = req.method, path = req.path, headers = req.headers, body = req.body, json = decoded }
end

-- The answer of the chat request, cut to max_tokens: text, finish_reason.
local function answer_of(body, behavior, wants_json)
  local text
  if behavior == "fake-not-json" then
    text = "Sure! Here is what I found: the job ended in error and should be rerun."
  elseif behavior == "fake-huge" then
    local line = "All work and no play makes Jack a dull boy. "
    text = string.rep(line, math.ceil(HUGE_BYTES / #line))
  else
    text = model.answer(body.messages, { json = wants_json })
  end
  local limit = tonumber(body.max_completion_tokens or body.max_tokens)
  if limit and model.tokens(text) > limit then
    return text:sub(1, limit * 4), "length"
  end
  return text, "stop"
end

-- Splits text into the pieces a model would stream: a word and the space
-- after it (16 KiB slices for a huge answer).
local function pieces(text)
  local out = {}
  if #text > 1024 * 1024 then
    for i = 1, #text, 16384 do out[#out + 1] = text:sub(i, i + 16383) end
    return out
  end
  for p in text:gmatch("%s*%S+") do out[#out + 1] = p end
  local tail = text:match("%s+$")
  if tail then out[#out + 1] = tail end
  if #out == 0 then out[1] = text end
  return out
end

local function chunk(base, choices, usage, include_usage)
  base.choices = choices
  if include_usage then base.usage = usage or json.null else base.usage = nil end
  return "data: " .. json.encode(base) .. "\n\n"
end

-- stamps (x-fake-stamps: N, for bench/agents): the answer is N pieces
-- "@<wall-clock ms> ", each stamped as it is written, so a subscriber can
-- tell how long a piece took to reach it.
local function stream_answer(self, req, body, text, finish, usage, behavior, token_ms, stamps, first_ms)
  local include_usage = type(body.stream_options) == "table" and body.stream_options.include_usage == true
  local w = req:stream(200, { ["content-type"] = "text/event-stream; charset=utf-8",
    ["cache-control"] = "no-cache", ["x-request-id"] = request_id(self) })
  if not w then return end
  local base = { id = "chatcmpl-" .. native.uuid():gsub("-", ""), object = "chat.completion.chunk",
    created = math.floor(native.time()), model = body.model, system_fingerprint = "fp_chorus_fake" }
  if not w:write(chunk(base, { { index = 0, delta = { role = "assistant", content = "" },
    logprobs = json.null, finish_reason = json.null } }, nil, include_usage)) then return end
  local ps = pieces(text)
  if stamps then
    ps = {}
    for i = 1, stamps do ps[i] = true end
  end
  local cut_at = behavior == "fake-cut" and math.max(1, math.floor(#ps / 2)) or nil
  for i, p in ipairs(ps) do
    if cut_at and i > cut_at then
      sched.sleep(20) -- what was sent reaches the client, then the cut
      return w:abort()
    end
    local wait = i == 1 and first_ms or token_ms
    if wait > 0 then sched.sleep(wait) end
    if stamps then p = ("@%.3f "):format(native.time() * 1000) end
    local ok = w:write(chunk(base, { { index = 0, delta = { content = p }, logprobs = json.null,
      finish_reason = json.null } }, nil, include_usage))
    if not ok then -- the client went away
      self.counts.client_gone = (self.counts.client_gone or 0) + 1
      return
    end
  end
  if not w:write(chunk(base, { { index = 0, delta = {}, logprobs = json.null, finish_reason = finish } },
    nil, include_usage)) then return end
  if include_usage and behavior ~= "fake-no-usage" then
    if not w:write(chunk(base, json.array({}), usage, true)) then return end
  end
  if not w:write("data: [DONE]\n\n") then return end
  w:close()
end

-- "fake-429-once": the first request with this prompt fails.
local function first_time(self, behavior, body)
  local key = behavior .. native.sha256(json.canonical(body.messages) or "")
  if self.seen[key] then return false end
  self.seen[key] = true
  return true
end

local function retry_after(req)
  local ms = tonumber(req.headers["x-fake-retry-after-ms"])
  if ms then return { ["retry-after-ms"] = tostring(ms), ["retry-after"] = tostring(math.ceil(ms / 1000)) } end
  return { ["retry-after"] = req.headers["x-fake-retry-after"] or "1" }
end

local function check_chat(body)
  if type(body.model) ~= "string" or body.model == "" then
    return "you must provide a model parameter"
  end
  if body.messages == nil then
    return "Missing required parameter: 'messages'.", "missing_required_parameter", "messages"
  end
  if type(body.messages) ~= "table" or #body.messages == 0 then
    return "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      "empty_array", "messages"
  end
  for i, m in ipairs(body.messages) do
    local roles = { system = true, developer = true, user = true, assistant = true, tool = true }
    if type(m) ~= "table" or not roles[m.role] then
      return ("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'.")
        :format(type(m) == "table" and tostring(m.role) or "?"), "invalid_value", ("messages[%d].role"):format(i - 1)
    end
  end
  local t = body.temperature
  if t ~= nil and (type(t) ~= "number" or t < 0 or t > 2) then
    return ("Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got %s instead.")
      :format(tostring(t)), "decimal_above_max_value", "temperature"
  end
  local mt = body.max_completion_tokens or body.max_tokens
  if mt ~= nil and (type(mt) ~= "number" or mt < 1) then
    return ("Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got %s instead.")
      :format(tostring(mt)), "integer_below_min_value", "max_tokens"
  end
  if body.stream_options ~= nil and body.stream ~= true then
    return "The 'stream_options' parameter is only allowed when 'stream' is enabled.", nil, "stream_options"
  end
  local rf = body.response_format
  if rf ~= nil then
    local ty = type(rf) == "table" and rf.type
    if ty ~= "text" and ty ~= "json_object" and ty ~= "json_schema" then
      return ("Invalid value: '%s'. Supported values are: 'json_object', 'json_schema', and 'text'.")
        :format(tostring(ty)), "invalid_value", "response_format.type"
    end
    if ty == "json_object" then
      local found = false
      for _, m in ipairs(body.messages) do
        if type(m.content) == "string" and m.content:lower():find("json", 1, true) then found = true end
      end
      if not found then
        return "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
          nil, "messages"
      end
    end
  end
end

local function chat(self, req, body, behavior)
  local msg, code, param = check_chat(body)
  if msg then return fail(400, msg, "invalid_request_error", code, param) end
  if self.model_set and not self.model_set[body.model] and not BEHAVIORS[body.model] then
    return fail(404, ("The model `%s` does not exist or you do not have access to it."):format(body.model),
      "invalid_request_error", "model_not_found")
  end
  if behavior == "fake-429" or (behavior == "fake-429-once" and first_time(self, behavior, body)) then
    return fail(429, "Rate limit reached for requests. Please try again in 1s.", "requests",
      "rate_limit_exceeded", nil, retry_after(req))
  end
  if behavior == "fake-500" or (behavior == "fake-500-once" and first_time(self, behavior, body)) then
    return fail(500, "The server had an error while processing your request. Sorry about that!", "server_error")
  end
  if behavior == "fake-400" then
    return fail(400, "This model's maximum context length is 8192 tokens. However, your messages resulted in "
      .. "9120 tokens. Please reduce the length of the messages.", "invalid_request_error",
      "context_length_exceeded", "messages")
  end
  if behavior == "fake-garbage" then
    return 200, { ["content-type"] = "text/html" },
      "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
  end
  local rf = body.response_format
  local wants_json = type(rf) == "table" and (rf.type == "json_object" or rf.type == "json_schema")
  local text, finish = answer_of(body, behavior, wants_json)
  local prompt_tokens = model.prompt_tokens(body.messages)
  local completion_tokens = model.tokens(text)
  local usage = { prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
    total_tokens = prompt_tokens + completion_tokens }
  if body.stream == true then
    local token_ms = tonumber(req.headers["x-fake-token-ms"])
      or (behavior == "fake-slow" and self.token_ms) or 0
    local stamps = tonumber(req.headers["x-fake-stamps"])
    stamps = stamps and stamps >= 1 and math.min(math.floor(stamps), 100000) or nil
    local first_ms = tonumber(req.headers["x-fake-first-ms"]) or token_ms
    local jitter = tonumber(req.headers["x-fake-first-jitter-ms"])
    if jitter and jitter >= 1 then first_ms = first_ms + math.random(0, math.min(math.floor(jitter), 60000)) end
    return stream_answer(self, req, body, text, finish, usage, behavior, token_ms, stamps, first_ms)
  end
  local out = json.encode({
    id = "chatcmpl-" .. native.uuid():gsub("-", ""), object = "chat.completion",
    created = math.floor(native.time()), model = body.model, system_fingerprint = "fp_chorus_fake",
    choices = { { index = 0, message = { role = "assistant", content = text, refusal = json.null },
      logprobs = json.null, finish_reason = finish } },
    usage = usage,
  })
  if behavior == "fake-cut" then
    -- Half a body, then the connection is cut.
    local w = req:stream(200, JSON_TYPE)
    if w and w:write(out:sub(1, math.floor(#out / 2))) then
      sched.sleep(20)
      w:abort()
    end
    return
  end
  return 200, { ["content-type"] = "application/json", ["x-request-id"] = request_id(self) }, out
end

local function embeddings(self, req, body)
  if type(body.model) ~= "string" or body.model == "" then
    return fail(400, "you must provide a model parameter")
  end
  local input = body.input
  if type(input) == "string" then input = { input } end
  if type(input) ~= "table" or #input == 0 then
    return fail(400, "'input' is a required property", "invalid_request_error", nil, "input")
  end
  local dims = body.dimensions or 64
  if type(dims) ~= "number" or dims < 1 or dims > 3072 or dims ~= math.floor(dims) then
    return fail(400, "Invalid 'dimensions': expected an integer between 1 and 3072.", "invalid_request_error",
      "invalid_value", "dimensions")
  end
  if body.encoding_format ~= nil and body.encoding_format ~= "float" then
    return fail(400, ("Invalid value: '%s'. This server supports 'float' only."):format(tostring(body.encoding_format)),
      "invalid_request_error", "invalid_value", "encoding_format")
  end
  local data, tokens = {}, 0
  for i, text in ipairs(input) do
    if type(text) ~= "string" or text == "" then
      return fail(400, ("'$.input[%d]' is invalid. Please check the API reference."):format(i - 1),
        "invalid_request_error", nil, "input")
    end
    tokens = tokens + model.tokens(text)
    data[i] = { object = "embedding", index = i - 1, embedding = model.embedding(text, dims, native.sha256) }
  end
  return 200, { ["content-type"] = "application/json", ["x-request-id"] = request_id(self) },
    json.encode({ object = "list", data = data, model = body.model,
      usage = { prompt_tokens = tokens, total_tokens = tokens } })
end

local function model_object(id)
  return { id = id, object = "model", created = 1700000000, owned_by = "chorus" }
end

local function handle(self, req)
  local p, method = req.path, req.method
  if self.api_key then
    local auth = req.headers["authorization"]
    if not auth then
      record(self, req)
      return fail(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
        .. "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    end
    if auth ~= "Bearer " .. self.api_key then
      record(self, req)
      return fail(401, ("Incorrect API key provided: %s. You can find your API key in your account settings.")
        :format((auth:gsub("^Bearer ", ""))), "invalid_request_error", "invalid_api_key")
    end
  end
  if method == "GET" and p == "/v1/models" then
    record(self, req)
    local data = {}
    for _, id in ipairs(self.models) do data[#data + 1] = model_object(id) end
    return 200, JSON_TYPE, json.encode({ object = "list", data = data })
  end
  local id = method == "GET" and p:match("^/v1/models/([^/]+)$")
  if id then
    record(self, req)
    if self.model_set and not self.model_set[id] then
      return fail(404, ("The model '%s' does not exist"):format(id), "invalid_request_error", "model_not_found", "model")
    end
    return 200, JSON_TYPE, json.encode(model_object(id))
  end
  if method == "POST" and (p == "/v1/chat/completions" or p == "/v1/embeddings") then
    local body, jerr = json.decode(req.body)
    record(self, req, body)
    if type(body) ~= "table" then
      return fail(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        .. "using your HTTP library correctly. The OpenAI API expects a JSON payload.) " .. tostring(jerr or ""))
    end
    self.counts[p] = (self.counts[p] or 0) + 1
    if p == "/v1/embeddings" then return embeddings(self, req, body) end
    local behavior = req.headers["x-fake-behavior"] or (BEHAVIORS[body.model] and body.model)
    return chat(self, req, body, behavior)
  end
  record(self, req)
  return fail(404, ("Invalid URL (%s %s)"):format(method, p))
end

-- start({port = 0, host = "127.0.0.1", api_key = nil, token_ms = 50,
--        models = nil (any model is served; a list restricts it)})
--   -> fake | nil, err
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({
    api_key = opts.api_key, token_ms = opts.token_ms or 50, requests = {}, counts = {},
    seen = {}, seq = 0, models = opts.models or M.MODELS,
  }, Fake)
  if opts.models then
    self.model_set = {}
    for _, m in ipairs(opts.models) do self.model_set[m] = true end
  end
  local srv, err = server.listen({ host = opts.host or "127.0.0.1", port = opts.port or 0,
    max_body_bytes = 16 * 1024 * 1024 }, function(req) return handle(self, req) end)
  if not srv then return nil, err end
  self._srv = srv
  self.port = srv.port
  self.url = ("http://%s:%d/v1"):format(opts.host or "127.0.0.1", srv.port)
  return self
end

-- fake:close({grace_ms}) -> true
function Fake:close(opts)
  return self._srv:close({ grace_ms = opts and opts.grace_ms or 1000, wait = opts and opts.wait })
end

-- The command: build/chorus lua fakes/llm.lua [--port N] ...
local function main(...)
  local args, i = { ... }, 1
  local o = { port = 0 }
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--port" then o.port = tonumber(v)
    elseif a == "--host" then o.host = v
    elseif a == "--token-ms" then o.token_ms = tonumber(v)
    elseif a == "--api-key-env" then
      o.api_key = os.getenv(v or "")
      if not o.api_key or o.api_key == "" then
        io.stderr:write(("fakes/llm.lua: %s is not set\n"):format(tostring(v)))
        return 2
      end
    else
      io.stderr:write("usage: chorus lua fakes/llm.lua [--port N] [--host H] [--api-key-env NAME] [--token-ms N]\n")
      return 2
    end
    i = i + 2
  end
  if not o.port then
    io.stderr:write("fakes/llm.lua: --port needs a number\n")
    return 2
  end
  local fake, err = M.start(o)
  if not fake then
    io.stderr:write("fakes/llm.lua: " .. tostring(err) .. "\n")
    return 1
  end
  io.stdout:write(fake.url, "\n")
  io.stdout:flush()
  local stop = sched.cond()
  local hooks = {}
  for _, sig in ipairs({ "SIGTERM", "SIGINT" }) do
    hooks[#hooks + 1] = native.on_signal(sig, function(name) stop:signal(name) end)
  end
  stop:wait()
  for _, h in ipairs(hooks) do h:close() end
  fake:close({ grace_ms = 1000 })
  return 0
end

-- require passes the module's name; the command passes its options.
local first = ...
if first == nil or first:sub(1, 2) == "--" then return main(...) end
return M
