-- chorus.api.router: maps METHOD + path to a handler. Patterns are paths
-- with {name} segments ("/configs/{key}"); a segment matches one path
-- segment, percent-decoded. A path that matches no pattern is 404; a
-- pattern that matches with another method is 405 with an Allow header.
local M = {}

local Router = {}
Router.__index = Router

function M.new()
  return setmetatable({ routes = {} }, Router)
end

-- A find loop rather than gmatch: LuaJIT compiles it (every request).
-- Tables made at the size they reach (LuaJIT's table.new): one grown
-- from empty is rehashed at each power of two, ~16 times a POST execute
-- before these (callgrind).
local find, sub = string.find, string.sub
local new_tab = require "table.new"
local function split(path)
  local parts, pos, n = new_tab(8, 0), 1, 0
  local len = #path
  while pos <= len do
    local slash = find(path, "/", pos, true)
    local stop = slash and slash - 1 or len
    if stop >= pos then
      n = n + 1
      parts[n] = sub(path, pos, stop)
    end
    if not slash then break end
    pos = slash + 1
  end
  return parts
end

-- add(method, pattern, handler): handler(req, params) -> status, headers, body
function Router:add(method, pattern, handler)
  local segs = split(pattern)
  local spec = {}
  for i, s in ipairs(segs) do
    local name = s:match("^{([%w_]+)}$")
    spec[i] = name and { param = name } or { literal = s }
  end
  self.routes[#self.routes + 1] = { method = method, segs = spec, handler = handler, pattern = pattern }
end

-- Module-level, not a closure per call: LuaJIT does not compile a
-- function that creates a closure, and this runs on every request.
local function hex_char(h) return string.char(tonumber(h, 16)) end

-- Percent-decoding; returns nil for a malformed escape.
local function unescape(s)
  if not s:find("%", 1, true) then return s end
  if s:find("%%[^%x]") or s:find("%%%x[^%x]") or s:find("%%%x?$") then return nil end
  return (s:gsub("%%(%x%x)", hex_char))
end
M.unescape = unescape

-- match(method, path) -> handler, params, pattern | nil, "not_found" | nil, "method_not_allowed", allow
function Router:match(method, path)
  local parts = split(path)
  local allow
  for _, r in ipairs(self.routes) do
    if #r.segs == #parts then
      -- params is made only for a route that gets as far as a parameter
      -- (most candidates fail on a literal segment first).
      local params, ok = nil, true
      for i, s in ipairs(r.segs) do
        local p = parts[i]
        if s.literal then
          if s.literal ~= p then ok = false break end
        else
          local v = unescape(p)
          if v == nil or v == "" then ok = false break end
          params = params or new_tab(0, 2)
          params[s.param] = v
        end
      end
      if ok then
        params = params or {}
        if r.method == method or (method == "HEAD" and r.method == "GET") then
          return r.handler, params, r.pattern
        end
        allow = allow or {}
        allow[#allow + 1] = r.method
      end
    end
  end
  if allow then return nil, "method_not_allowed", table.concat(allow, ", ") end
  return nil, "not_found"
end

-- text(s) -> true when s is well-formed UTF-8 without NUL: what a
-- decoded path segment or query value must be before it reaches a store.
local utf8_valid = require("chorus.native").utf8_valid
local function text(s)
  return find(s, "\0", 1, true) == nil and utf8_valid(s)
end
M.text = text

-- parse_query("a=1&b=x%20y") -> {a = "1", b = "x y"} | nil, err
function M.parse_query(q)
  local out = {}
  if q == nil or q == "" then return out end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape((k:gsub("+", " ")))
    v = unescape((v:gsub("+", " ")))
    if k == nil or v == nil then return nil, "malformed percent-escape in the query string" end
    if not text(k) or not text(v) then
      return nil, ("query parameter %s is not UTF-8 text (a NUL or a malformed byte)"):format(text(k) and k or "(name)")
    end
    if k ~= "" then out[k] = v end
  end
  return out
end

return M
