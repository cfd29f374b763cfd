-- http: one HTTP request to any service (a CRM, a ticketing system, a
-- webhook), built from templates over the step input. Header values may
-- name environment variables ("Authorization": "Bearer ${CRM_TOKEN}"),
-- which never appear in records or errors. The answer is checked against
-- the expected statuses; JSON is decoded and `extract` picks a value out
-- of it. 429 and 5xx may be retried (Retry-After is honoured). The work
-- is in lua/chorus/http/call.lua; docs/agents.md has the reference.
-- Loaded when first called (chorus.lazy): a node loads every agent at start.
local lazy = require "chorus.lazy"
local call = lazy "chorus.http.call"

local STATUS = { type = { "integer", "string" } }

return {
  name = "http",
  version = "1.0.0",
  description = "An HTTP request from templates: expected statuses, JSON extraction, size limit, retries on 429/5xx.",
  schema = { fields = {
    url = { type = "string", required = true, min_len = 1,
      description = "http(s) URL template; placeholders in the path and query are percent-encoded" },
    method = { type = "string", enum = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS" },
      normalize = function(v) return type(v) == "string" and v:upper() or v end,
      description = "default GET, or POST when there is a body" },
    query = { type = "object", additional = { type = { "string", "number", "boolean" } },
      description = "query parameters (templates), appended encoded" },
    headers = { type = "object", additional = { type = "string" },
      description = "header templates; ${NAME} takes an environment variable (a secret)" },
    body = { type = "any",
      description = "a JSON value (templates inside strings; sent as application/json) or a string template" },
    expected = { type = "array", min_items = 1, items = STATUS, default = { "2xx" },
      description = "statuses that count as success: numbers or classes like \"2xx\"" },
    extract = { type = "string", description = "a path into the JSON response (data.items[0].id): the step's output" },
    response = { type = "string", enum = { "auto", "json", "text" }, default = "auto",
      description = "auto: JSON when the content-type says so" },
    max_response_bytes = { type = "integer", min = 1, max = 256 * 1024 * 1024,
      description = "largest response accepted (default 1 MiB)" },
    request_timeout_ms = { type = "integer", min = 1,
      description = "bound on the request (default: none; the step's timeout_ms applies)" },
    follow_redirects = { type = "boolean", default = false },
  } },

  check_step = function(step, cfg)
    local errors = call.check(step, cfg.steps_by_id)
    for i, e in ipairs(step.params and step.params.expected or {}) do
      local ok = (type(e) == "number" and e >= 100 and e <= 599 and e == math.floor(e))
        or (type(e) == "string" and e:match("^[1-5]xx$"))
      if not ok then
        errors[#errors + 1] = { path = ("params.expected[%d]"):format(i - 1),
          message = "must be a status (100..599) or a class such as \"2xx\"" }
      end
    end
    return errors
  end,

  call = function(input, ctx, step)
    return call.call(input, ctx, step.params)
  end,
}
