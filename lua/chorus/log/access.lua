-- chorus.log.access: one record per HTTP request, at info:
--
--   {"msg":"http request","method":"GET",
--    "route":"/api/v1/orchestrations/status/{trace_id}","status":200,
--    "duration_ms":0.412,"key_id":"chk_0123abcd","remote":"127.0.0.1",
--    "trace_id":"..."}
--
-- route is the router's pattern, never the path (ids stay out of it and
-- it groups well); a path no route matched is "unmatched". key_id is the
-- API key's public prefix from the principal, never the key. A WebSocket
-- is recorded when its session ends (status 101, duration the session's).
--
--   access.record(req, status, started) with started = native.now() at
--   the request's start; req.route, req.principal, req.trace_id as the
--   API's handle leaves them.
local log = require "chorus.log"
local native = require "chorus.native"

local now, floor, line = native.now, math.floor, log.line

local M = { UNMATCHED = "unmatched" }

function M.record(req, status, started)
  if log.level > 2 then return end
  local p = req.principal
  line(2, "http request",
    "method", req.method,
    "route", req.route or M.UNMATCHED,
    "status", status,
    "duration_ms", floor((now() - started) * 1000 + 0.5) / 1000,
    "key_id", p and (p.key_prefix or p.key_id) or nil,
    "remote", req.remote,
    "trace_id", req.trace_id)
end

return M
