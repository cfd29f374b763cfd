-- The admin page's files, served by `chorus serve` itself (no second
-- server, nothing from a CDN): web/ in the Chorus home.
--   GET /          -> 302 /admin/
--   GET /docs      -> 302 /admin/#/api (the OpenAPI document, readable)
--   GET /admin     -> 301 /admin/
--   GET /admin/... -> a file of web/ (index.html for /admin/)
-- Only GET and HEAD; a path that is not a plain relative file name
-- (.., hidden files, backslashes, bad escapes) or names no file gets the
-- page's own 404 (HTML: a person is reading). Files are sent with their
-- content type, an ETag (a client revalidates with If-None-Match and gets
-- 304) and Cache-Control: no-cache, so a new version is seen at once.
-- These are not API routes: the API's unknown paths still get its JSON 404.
local native = require "chorus.native"
local router = require "chorus.api.router"
local errors = require "chorus.api.errors"

local M = {}

local TYPES = {
  html = "text/html; charset=utf-8", js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8", json = "application/json", svg = "image/svg+xml", png = "image/png",
  ico = "image/x-icon", txt = "text/plain; charset=utf-8", woff2 = "font/woff2", map = "application/json",
}

-- The page's scripts and styles come only from this server; connections
-- only to it (REST and WebSocket).
local SECURITY = {
  ["x-content-type-options"] = "nosniff",
  ["referrer-policy"] = "no-referrer",
  ["x-frame-options"] = "DENY",
  ["content-security-policy"] = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    .. "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

local function headers(extra)
  local h = {}
  for k, v in pairs(SECURITY) do h[k] = v end
  for k, v in pairs(extra) do h[k] = v end
  return h
end

local NOT_FOUND = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found · Chorus</title>
<link rel="icon" href="/admin/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/admin/css/app.css"></head>
<body class="notfound"><main><h1>Page not found</h1>
<p>There is no page at this address.</p>
<p><a href="/admin/">Open the Chorus admin page</a></p></main></body></html>
]]

local function not_found()
  return 404, headers({ ["content-type"] = "text/html; charset=utf-8", ["cache-control"] = "no-cache" }), NOT_FOUND
end

-- relative(path) -> the file name under web/ | nil when it is not a safe one
local function relative(raw)
  local rel = raw:sub(#"/admin/" + 1)
  if rel == "" then return "index.html" end
  rel = router.unescape(rel)
  if not rel or #rel > 512 or not rel:match("^[%w%-%._/]+$") then return nil end
  -- every segment a plain name: no "" (//, a trailing /), ".", "..", hidden files
  for seg in (rel .. "/"):gmatch("([^/]*)/") do
    if seg == "" or seg:sub(1, 1) == "." then return nil end
  end
  return rel
end
M.relative = relative

-- Files read from disk are kept a second: a burst of requests reads once,
-- an edited file is served within a second.
local cache = {}
local KEEP_S = 1

local function load(dir, rel)
  local now = native.now() / 1000
  local c = cache[rel]
  if c and c.dir == dir and now - c.at < KEEP_S then return c end
  local f = io.open(dir .. "/" .. rel, "rb")
  if not f then cache[rel] = nil return nil end
  local body = f:read("*a") -- nil for a directory
  f:close()
  if not body then return nil end
  c = { dir = dir, at = now, body = body, etag = '"' .. native.sha256(body):sub(1, 32) .. '"' }
  cache[rel] = c
  return c
end

-- serve(svc, req) -> status, headers, body | nil (not a page path)
function M.serve(svc, req)
  local path = req.path
  local page = path == "/" or path == "/docs" or path == "/admin" or path:sub(1, 7) == "/admin/"
  if not page then return nil end
  -- one label for every file of the page (metrics, logs): never the raw path
  req.route = path:sub(1, 7) == "/admin/" and "/admin/{file}" or path
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return errors.response("method_not_allowed", req.method .. " is not allowed on the admin page", nil,
      { allow = "GET, HEAD" })
  end
  if path == "/" then return 302, headers({ location = "/admin/" }), "" end
  if path == "/docs" then return 302, headers({ location = "/admin/#/api" }), "" end
  if path == "/admin" then return 301, headers({ location = "/admin/" }), "" end
  local rel = relative(path)
  if not rel then return not_found() end
  local ext = rel:match("%.([%w]+)$")
  local ctype = ext and TYPES[ext:lower()]
  if not ctype then return not_found() end
  local file = load(svc.web_dir or (native.home .. "/web"), rel)
  if not file then return not_found() end
  local h = headers({ ["content-type"] = ctype, etag = file.etag, ["cache-control"] = "no-cache" })
  local inm = req.headers["if-none-match"]
  if inm and (inm == "*" or inm:find(file.etag, 1, true)) then return 304, h, "" end
  return 200, h, req.method == "HEAD" and "" or file.body
end

function M.register(app)
  app:fallback(function(req) return M.serve(app.service, req) end)
end

return M
