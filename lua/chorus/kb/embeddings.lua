-- chorus.kb.embeddings: vectors from an OpenAI-compatible embeddings
-- endpoint (OpenAI, vLLM, Ollama's /v1, LiteLLM...), for the knowledge
-- base's import and its re-ranking. The endpoint and key are resolved as
-- the llm agent resolves them (chorus.llm.endpoint): base_url, else
-- $OPENAI_BASE_URL, else OpenAI's; the key from the variable api_key_env
-- names, else $OPENAI_API_KEY, else none (local servers need none).
--
--   client({model, base_url, api_key_env, api_key_header, traceparent,
--           timeout_ms}) -> emb | nil, err, info
--   emb:embed(texts) -> {vector...}, {prompt_tokens, total_tokens}
--                    | nil, err, info
--     POST {base_url}/embeddings {"model": m, "input": [texts]} in batches
--     of 64; reads {"data": [{"index": i, "embedding": [...]}], "usage"}
--
-- Failures follow chorus.http.failure: 429 and 5xx may be retried
-- ({retry_after_ms} when the service said when), other statuses, TLS and
-- malformed answers not ({retry = false}); the key is never in a message.
local http = require "chorus.http.client"
local endpoint = require "chorus.llm.endpoint"
local failure = require "chorus.http.failure"

local format, type, ipairs, tonumber = string.format, type, ipairs, tonumber
local NO_RETRY = failure.NO_RETRY

local M = { BATCH = 64 }

local Emb = {}
Emb.__index = Emb

function M.client(opts)
  opts = opts or {}
  if type(opts.model) ~= "string" or opts.model == "" then
    return nil, "no embeddings model given", NO_RETRY
  end
  local ep, err = endpoint.resolve_now({ model = opts.model, base_url = opts.base_url,
    api_key_env = opts.api_key_env ~= "OPENAI_API_KEY" and opts.api_key_env or nil })
  if not ep then return nil, err, NO_RETRY end
  return setmetatable({
    ep = ep, url = ep.base_url .. "/embeddings", model = opts.model,
    key_env = opts.api_key_env or "OPENAI_API_KEY", api_key_header = opts.api_key_header,
    traceparent = opts.traceparent, timeout_ms = opts.timeout_ms or 60000,
  }, Emb)
end

function Emb:fail(msg, info)
  return nil, failure.redact(msg, self.ep.secrets), info
end

function Emb:batch(texts)
  local prefix = "embeddings: POST " .. failure.safe_url(self.url)
  local headers = endpoint.set_auth(self.ep, { api_key_header = self.api_key_header }, { traceparent = self.traceparent })
  local res, err, kind = http.post_json(self.url, { model = self.model, input = texts, encoding_format = "float" },
    { headers = headers, timeout_ms = self.timeout_ms, max_body_bytes = 64 * 1024 * 1024 })
  if not res then return self:fail(failure.transport(prefix, err, kind)) end
  if res.status ~= 200 then
    local msg, info = failure.status(prefix, res)
    if res.status == 401 or res.status == 403 then msg = msg .. " (check " .. self.key_env .. ")" end
    return self:fail(msg, info)
  end
  local doc = res.json
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    return self:fail(format("%s: expected {\"data\": [...]} in the answer, got: %s", prefix, failure.snippet(res.body)), NO_RETRY)
  end
  local out = {}
  for i, d in ipairs(doc.data) do
    local idx = type(d) == "table" and tonumber(d.index) or (i - 1)
    local v = type(d) == "table" and d.embedding
    if type(v) ~= "table" or #v == 0 or idx == nil or idx < 0 or idx >= #texts then
      return self:fail(format("%s: item %d of the answer has no embedding", prefix, i - 1), NO_RETRY)
    end
    for _, x in ipairs(v) do
      if type(x) ~= "number" then
        return self:fail(format("%s: item %d holds a value that is not a number", prefix, i - 1), NO_RETRY)
      end
    end
    out[idx + 1] = v
  end
  for i = 1, #texts do
    if not out[i] then
      return self:fail(format("%s: %d inputs, %d embeddings back", prefix, #texts, #doc.data), NO_RETRY)
    end
  end
  local usage = type(doc.usage) == "table" and doc.usage or {}
  return out, tonumber(usage.prompt_tokens) or 0, tonumber(usage.total_tokens) or tonumber(usage.prompt_tokens) or 0
end

function Emb:embed(texts)
  local all, prompt, total = {}, 0, 0
  local dims
  for i = 1, #texts, M.BATCH do
    local part = {}
    for j = i, math.min(#texts, i + M.BATCH - 1) do part[#part + 1] = texts[j] end
    local vecs, p, t = self:batch(part)
    if not vecs then return nil, p, t end
    for _, v in ipairs(vecs) do
      dims = dims or #v
      if #v ~= dims then
        return self:fail(format("embeddings: vectors of %d and %d dimensions in one answer", dims, #v), NO_RETRY)
      end
      all[#all + 1] = v
    end
    prompt, total = prompt + p, total + t
  end
  return all, { prompt_tokens = prompt, total_tokens = total }
end

return M
