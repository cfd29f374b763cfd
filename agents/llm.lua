-- llm: an OpenAI-compatible chat completion (OpenAI, Azure-style gateways,
-- vLLM, Ollama's /v1, LiteLLM, the shipped fakes/llm.lua). The prompt and
-- system message are templates over the step input; the answer is text or
-- JSON, whole or streamed (every delta goes out as a step.delta event);
-- tokens and cost (prices.json) are recorded per step. The endpoint, model
-- and key come from params or the environment (OPENAI_BASE_URL,
-- CHORUS_LLM_MODEL, OPENAI_API_KEY); the key only ever from the
-- environment. The work is in lua/chorus/llm/ (chat.lua); docs/agents.md
-- has the reference.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local chat = lazy "chorus.llm.chat"
local template = require "chorus.template"
local http_call = lazy "chorus.http.call"

local ENV_NAME = "^[%a_][%w_]*$"

return {
  name = "llm",
  version = "1.0.0",
  description = "Chat completion from an OpenAI-compatible endpoint (templates, JSON answers, streaming, tokens and cost).",
  schema = { fields = {
    prompt = { type = "string", required = true, min_len = 1,
      description = "the user message: a template over the step input ({{job_name}}, {{dep_s1.status}})" },
    system = { type = "string", description = "the system message, a template like prompt" },
    base_url = { type = "string", pattern = "^https?://",
      description = "the API base, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL, else https://api.openai.com/v1)" },
    model = { type = "string", min_len = 1, description = "model name (default: $CHORUS_LLM_MODEL)" },
    api_key_env = { type = "string", pattern = ENV_NAME,
      description = "name of the environment variable holding the key (default: OPENAI_API_KEY, optional)" },
    api_key_header = { type = "string", pattern = "^[%w%-]+$",
      description = "header carrying the key: authorization (Bearer, default) or e.g. api-key" },
    temperature = { type = "number", min = 0, max = 2 },
    max_tokens = { type = "integer", min = 1, description = "most tokens the model may answer with" },
    response_format = { type = "string", enum = { "text", "json" }, default = "text",
      description = "json: ask for a JSON object and parse it (the step's output is the value)" },
    stream = { type = "boolean", default = false,
      description = "stream the answer: each piece goes out as a step.delta event as it is written" },
    headers = { type = "object", additional = { type = "string" },
      description = "more request headers (gateways); ${NAME} takes an environment variable (a secret)" },
    options = { type = "object", additional = true,
      description = "more request body fields (top_p, seed, stop...); never overrides the ones above" },
    max_response_bytes = { type = "integer", min = 1024, max = 256 * 1024 * 1024,
      description = "largest answer accepted (default 4 MiB)" },
    request_timeout_ms = { type = "integer", min = 1,
      description = "bound on one request (default: none; the step's timeout_ms applies)" },
  } },

  -- Placeholders must name something the step can have: a dependency's
  -- output, or a field of the execution input.
  check_step = function(step, cfg)
    local errors = http_call.check_headers(step, cfg.steps_by_id)
    for _, field in ipairs({ "system", "prompt" }) do
      local text = step.params and step.params[field]
      if type(text) == "string" then
        for _, e in ipairs(template.check_paths(step, cfg.steps_by_id, template.placeholders(text), "params." .. field)) do
          errors[#errors + 1] = e
        end
      end
    end
    return errors
  end,

  call = function(input, ctx, step)
    return chat.call(input, ctx, step.params)
  end,
}
