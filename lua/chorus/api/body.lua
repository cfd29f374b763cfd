-- chorus.api.body: reading a request's JSON body, with the 4xx a client
-- needs when it is wrong: 415 for a body that is not JSON by its
-- content type, 400 for invalid UTF-8 or invalid JSON (saying where),
-- 422 when the JSON is not an object. The size limit is the server's
-- (413 before the body is even read).
local json = require "chorus.json"
local native = require "chorus.native"
local errors = require "chorus.api.errors"

local M = {}

local function is_json_type(ct)
  if ct == nil then return false end
  local mt = ct:match("^%s*([^;%s]+)")
  if not mt then return false end
  mt = mt:lower()
  return mt == "application/json" or mt:match("^application/[%w%.%-]+%+json$") ~= nil
end
M.is_json_type = is_json_type

-- object(req, opts) -> table | nil, status, headers, body
-- opts.optional: an empty body gives {} (e.g. POST execute without input).
function M.object(req, opts)
  local body = req.body or ""
  if body:match("^%s*$") then
    if opts and opts.optional then return {} end
    return nil, errors.response("bad_request", "the request needs a JSON body")
  end
  if not is_json_type(req.headers["content-type"]) then
    return nil, errors.response("unsupported_media_type",
      ("the body must be sent as application/json, not %s"):format(req.headers["content-type"] or "without a content type"))
  end
  local ok, at = native.utf8_valid(body)
  if not ok then
    return nil, errors.response("invalid_json", ("the body is not valid UTF-8 (byte %d)"):format(at))
  end
  local v, err = json.decode(body)
  if v == nil then return nil, errors.response("invalid_json", err) end
  -- \u0000 decodes to a NUL byte, which no store can keep (PostgreSQL
  -- refuses it in text and jsonb): refused here, in both modes alike.
  local _, bad = native.value_check(v, math.huge, json.MAX_DEPTH)
  if bad and bad > 0 then
    return nil, errors.response("invalid_json", "the body holds a NUL character (\\u0000), which text may not contain")
  end
  if type(v) ~= "table" or (next(v) ~= nil and json.is_array(v)) then
    return nil, errors.validation({ { path = "(root)", message = "must be a JSON object" } },
      "the body must be a JSON object")
  end
  return v
end

return M
