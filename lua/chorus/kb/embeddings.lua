-- chorus.kb.embeddings: vectors from an OpenAI-compatible embeddings
-- endpoint (OpenAI, vLLM, Ollama's /v1, LiteLLM...), for the knowledge
-- base's import and its re-ranking.
--
--   client({base_url, model, api_key_env, getenv, traceparent, timeout_ms})
--     -> emb | nil, err, info
--     base_url: default $OPENAI_BASE_URL, e.g. http://127.0.0.1:11434/v1
--     (POST {base_url}/embeddings); the key from $OPENAI_API_KEY (or the
--     variable api_key_env names), sent as a Bearer token when set
--   emb:embed(texts) -> {vector...}, {prompt_tokens, total_tokens}
--                    | nil, err, info
--     sends {"model": m, "input": [texts]} in batches of 64 and reads
--     {"data": [{"index": i, "embedding": [...]}], "usage": {...}}
--
-- info: {retry = false} (bad key, unknown model: 4xx), {retry_after_ms}
-- (429, 5xx). The key never appears in a message.
local http = require "chorus.http.client"
local json = require "chorus.json"
local retry_after = require "chorus.http.retry_after"

local format, type, ipairs, tostring = string.format, type, ipairs, tostring

local M = { BATCH = 64 }

local NO_RETRY = { retry = false }

local Emb = {}
Emb.__index = Emb

function M.client(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local base = opts.base_url or getenv("OPENAI_BASE_URL")
  if base == nil or base == "" then
    return nil, "no embeddings endpoint: set OPENAI_BASE_URL (or base_url), e.g. http://127.0.0.1:11434/v1", NO_RETRY
  end
  if not base:match("^https?://[^%s/@]+") then
    return nil, "the embeddings base URL must start with http:// or https:// and hold no credentials", NO_RETRY
  end
  if type(opts.model) ~= "string" or opts.model == "" then
    return nil, "no embeddings model given", NO_RETRY
  end
  local key_env = opts.api_key_env or "OPENAI_API_KEY"
  local key = getenv(key_env)
  if key == "" then key = nil end
  return setmetatable({
    url = base:gsub("/+$", "") .. "/embeddings", base = base:gsub("/+$", ""), model = opts.model,
    key_env = key_env, _key = key, traceparent = opts.traceparent, timeout_ms = opts.timeout_ms or 60000,
  }, Emb)
end

function Emb:scrub(s)
  s = tostring(s)
  local key = self._key
  if key and #key >= 4 then
    local i = 1
    while true do
      local a, b = s:find(key, i, true)
      if not a then break end
      s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
      i = a + 3
    end
  end
  return s
end

-- The provider's own error message ({"error": {"message": ...}}).
function Emb:says(res)
  local doc = json.decode(res.body or "")
  local m = type(doc) == "table" and (type(doc.error) == "table" and doc.error.message or doc.error or doc.message)
  if type(m) ~= "string" then m = (res.body or ""):gsub("%s+", " "):sub(1, 200) end
  return self:scrub(m)
end

function Emb:batch(texts)
  local headers = { traceparent = self.traceparent }
  if self._key then headers.authorization = "Bearer " .. self._key end
  local res, err, kind = http.post_json(self.url, { model = self.model, input = texts, encoding_format = "float" },
    { headers = headers, timeout_ms = self.timeout_ms, max_body_bytes = 64 * 1024 * 1024 })
  if not res then
    if kind == "cancelled" then return nil, kind end
    if kind == "timeout" then
      return nil, format("embeddings at %s: no answer within %d ms", self.base, self.timeout_ms)
    end
    local info = (kind == "tls error" or kind == "bad url" or kind == "too large") and NO_RETRY or nil
    return nil, format("embeddings at %s: %s", self.base, self:scrub(err)), info
  end
  if res.status == 429 or res.status >= 500 then
    return nil, format("embeddings at %s: HTTP %d: %s", self.base, res.status, self:says(res)),
      { retry_after_ms = retry_after.ms(res.headers["retry-after"]) }
  end
  if res.status ~= 200 then
    local hint = (res.status == 401 or res.status == 403) and (" (check " .. self.key_env .. ")") or ""
    return nil, format("embeddings at %s: HTTP %d%s: %s", self.base, res.status, hint, self:says(res)), NO_RETRY
  end
  local doc = res.json
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    return nil, format("embeddings at %s: expected {\"data\": [...]} in the answer, got %s", self.base,
      self:scrub((res.body or ""):sub(1, 200))), NO_RETRY
  end
  local out = {}
  for i, d in ipairs(doc.data) do
    local idx = type(d) == "table" and tonumber(d.index) or (i - 1)
    local v = type(d) == "table" and d.embedding
    if type(v) ~= "table" or #v == 0 or idx == nil or idx < 0 or idx >= #texts then
      return nil, format("embeddings at %s: item %d of the answer has no embedding", self.base, i - 1), NO_RETRY
    end
    for _, x in ipairs(v) do
      if type(x) ~= "number" then
        return nil, format("embeddings at %s: item %d holds a value that is not a number", self.base, i - 1), NO_RETRY
      end
    end
    out[idx + 1] = v
  end
  for i = 1, #texts do
    if not out[i] then
      return nil, format("embeddings at %s: %d inputs, %d embeddings back", self.base, #texts, #doc.data), NO_RETRY
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
        return nil, format("embeddings at %s: vectors of %d and %d dimensions in one answer", self.base, dims, #v), NO_RETRY
      end
      all[#all + 1] = v
    end
    prompt, total = prompt + p, total + t
  end
  return all, { prompt_tokens = prompt, total_tokens = total }
end

return M
