-- chorus.llm.endpoint: where an OpenAI-compatible call goes and how it
-- authenticates, from a step's params or the environment:
--
--   base_url     params.base_url, else $OPENAI_BASE_URL, else
--                https://api.openai.com/v1 (a trailing "/" is dropped)
--   model        params.model, else $CHORUS_LLM_MODEL
--   key          the environment variable params.api_key_env names (an
--                error when it is not set), else $OPENAI_API_KEY, else no
--                key (local servers such as Ollama need none). The key is
--                read from the environment only: never from params.
--   api_key_header  "authorization" (Bearer, the default) or the name of a
--                header that carries the key as it is (Azure's "api-key")
--
--   resolve(params) -> ep | nil, message   (once per params table)
--     ep = {base_url, model, key, secrets = {key}, chat_url}; ep.key may
--     be nil. Treat it as read-only: it is shared by every call.
--   set_auth(ep, params, headers) -> headers with the key's header
-- Shared by the llm agent and anything else that calls the same endpoint
-- (embeddings).
local getenv, setmetatable = os.getenv, setmetatable

local M = {}

M.DEFAULT_BASE_URL = "https://api.openai.com/v1"

local function env(name)
  local v = getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- A step's params and the process environment do not change while it
-- runs: each params table is resolved once (weak keys: it goes with its
-- config).
local resolved = setmetatable({}, { __mode = "k" })

function M.resolve(params)
  params = params or {}
  local ep = resolved[params]
  if ep then return ep end
  local err
  ep, err = M.resolve_now(params)
  if ep then resolved[params] = ep end
  return ep, err
end

function M.resolve_now(params)
  local base = params.base_url or env("OPENAI_BASE_URL") or M.DEFAULT_BASE_URL
  base = base:gsub("/+$", "")
  local model = params.model or env("CHORUS_LLM_MODEL")
  if not model then
    return nil, "no model: set params.model on the step or CHORUS_LLM_MODEL in the environment"
  end
  local key
  if params.api_key_env then
    key = env(params.api_key_env)
    if not key then
      return nil, ("environment variable %s (params.api_key_env) is not set"):format(params.api_key_env)
    end
  else
    key = env("OPENAI_API_KEY")
  end
  return { base_url = base, model = model, key = key, secrets = { key },
    chat_url = base .. "/chat/completions" }
end

function M.set_auth(ep, params, headers)
  local key = ep.key
  if not key then return headers end
  local name = params and params.api_key_header
  if name == nil or name == "authorization" or name == "Authorization" then
    headers.authorization = "Bearer " .. key
  else
    headers[name] = key
  end
  return headers
end

return M
