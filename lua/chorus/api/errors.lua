-- chorus.api.errors: the one error shape of the API,
-- {"error": {"code", "message", "details"}}, and the status of each code.
-- Handlers return errors.response(code, message, details); nothing else
-- builds an error body, so a client never sees a stack trace.
local json = require "chorus.json"

local M = {}

M.STATUS = {
  bad_request = 400, invalid_json = 400, unauthorized = 401, forbidden = 403,
  not_found = 404, method_not_allowed = 405, not_acceptable = 406, conflict = 409,
  invalid_state = 409, payload_too_large = 413, unsupported_media_type = 415,
  validation_failed = 422, too_many_requests = 429, internal = 500, unavailable = 503,
}

local JSON_HEADERS = { ["content-type"] = "application/json" }
M.JSON_HEADERS = JSON_HEADERS

-- Messages may quote what a client sent (a path, a name): bytes that are
-- not UTF-8 are repaired so the body stays valid JSON.
local repair = require("chorus.native").utf8_repair

-- response(code, message, details, headers) -> status, headers, body
function M.response(code, message, details, headers)
  local status = M.STATUS[code] or 500
  if details then
    for _, d in ipairs(details) do
      if type(d.message) == "string" then d.message = repair(d.message) end
      if type(d.path) == "string" then d.path = repair(d.path) end
    end
  end
  local body = json.encode({ error = { code = code, message = repair(tostring(message)),
    details = details or json.array() } })
  local h = JSON_HEADERS
  if headers then
    h = { ["content-type"] = "application/json" }
    for k, v in pairs(headers) do h[k] = v end
  end
  return status, h, body
end

-- from_validation(errors) -> the 422 response listing every {path, message}
function M.validation(errors, message)
  local details = json.array()
  for i, e in ipairs(errors) do details[i] = { path = e.path, message = e.message } end
  return M.response("validation_failed",
    message or ("%d validation error%s"):format(#errors, #errors == 1 and "" or "s"), details)
end

-- The API's error code for each way the service (chorus.run.service)
-- refuses to start an execution; anything else is "unavailable".
M.SUBMIT_CODES = { not_found = "not_found", inactive = "invalid_state", invalid_config = "validation_failed",
  invalid_input = "validation_failed", busy = "too_many_requests", conflict = "conflict" }

-- refused(code, message, errors) -> the response for a refused start
-- (REST; the WebSocket routes send the same code and message).
function M.refused(code, message, errs)
  local api_code = M.SUBMIT_CODES[code] or "unavailable"
  if code == "invalid_config" and errs then return M.validation(errs, message) end
  if code == "invalid_input" then return M.validation({ { path = "input", message = message } }, message) end
  if code == "busy" then return M.response(api_code, message, nil, { ["retry-after"] = "1" }) end
  if api_code == "unavailable" then message = "cannot start the execution: " .. tostring(message) end
  return M.response(api_code, message)
end

return M
