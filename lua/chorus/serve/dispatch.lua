-- chorus.serve.dispatch: the HTTP server's one request handler: the API
-- (REST and WebSocket routes alike), timed for the metrics and written to
-- the access log. A WebSocket is counted when its session ends (its
-- lifetime is no latency).
--
--   handler(app, http_metrics) -> function(req) -> status, headers, body
local access = require("chorus.log.access").record
local now = require("chorus.native").now

local M = {}

function M.handler(app, hm)
  return function(req)
    local t0 = now()
    local s, h, b = app:handle(req)
    if req.is_websocket then
      hm:websocket(req, s, t0)
      access(req, s or 101, t0)
    else
      hm:request(req, s, t0)
      access(req, s, t0)
    end
    return s, h, b
  end
end

return M
