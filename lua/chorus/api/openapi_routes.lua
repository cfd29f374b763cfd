-- GET /api/v1/openapi.json: the API's OpenAPI 3.1 document
-- (chorus.api.openapi). Public: it describes the API, not any tenant's
-- data, and clients and the admin page read it before they have a key.
-- Encoded once, when first asked for (the document's builder stays out
-- of a server's heap until then); an ETag lets clients revalidate with
-- If-None-Match.
local native = require "chorus.native"
local json = require "chorus.json"

local M = {}

local encoded, etag

local function document()
  if not encoded then
    encoded = assert(json.encode(require("chorus.api.openapi").document(native.version)))
    etag = '"' .. native.sha256(encoded):sub(1, 32) .. '"'
  end
  return encoded, etag
end

function M.register(app)
  app:route("GET", "/api/v1/openapi.json", { auth = false }, function(ctx)
    local body, tag = document()
    local h = { ["content-type"] = "application/json", etag = tag, ["cache-control"] = "no-cache" }
    local inm = ctx.req.headers["if-none-match"]
    if inm and inm:find(tag, 1, true) then return 304, h, "" end
    return 200, h, body
  end)
end

return M
