-- chorus.metrics.http: the HTTP API's request series, labelled so that
-- their number stays bounded whatever clients send: method (the known
-- ones, else "other"), route (the router's template, e.g.
-- /api/v1/orchestrations/status/{trace_id}, never the raw path; a path
-- no route matches is "unmatched") and status class ("2xx", "4xx"...).
--
--   local hm = require("chorus.metrics.http").new(reg)
--   hm:request(req, status, started_ms)  -- a plain request: counted, and
--                                        -- its duration observed
--   hm:websocket(req, status)            -- a WebSocket endpoint: status
--                                        -- when it refused, nil once upgraded
-- req.route is the template the API's router matched (chorus.api sets
-- it), for the WebSocket routes too.
local metrics = require "chorus.metrics"
local now = require("chorus.native").now

local M = {}

local floor = math.floor

local METHODS = { GET = "GET", HEAD = "HEAD", POST = "POST", PUT = "PUT", PATCH = "PATCH", DELETE = "DELETE",
  OPTIONS = "OPTIONS" }
local CLASSES = { "1xx", "2xx", "3xx", "4xx", "5xx" }

M.UNMATCHED = "unmatched"

function M.status_class(status)
  return type(status) == "number" and CLASSES[floor(status / 100)] or "other"
end

local Http = {}
Http.__index = Http

function M.new(reg)
  local labels = { "method", "route", "status_class" }
  return setmetatable({
    requests = reg:counter("chorus_http_requests_total",
      "HTTP requests answered, by method, route template and status class (WebSocket upgrades are 1xx).", labels),
    duration = reg:histogram("chorus_http_request_duration_seconds",
      "Time from a request's arrival at the API to its answer, by method, route template and status class "
        .. "(accepted WebSocket upgrades excluded: their lifetime is no latency).",
      labels, metrics.HTTP_BUCKETS),
  }, Http)
end

function Http:request(req, status, started_ms)
  local method, route, class = METHODS[req.method] or "other", req.route or M.UNMATCHED, M.status_class(status)
  self.requests:inc(1, method, route, class)
  self.duration:observe((now() - started_ms) / 1000, method, route, class)
end

function Http:websocket(req, status, started_ms)
  local method, route = METHODS[req.method] or "other", req.route or M.UNMATCHED
  if type(status) == "number" then
    local class = M.status_class(status)
    self.requests:inc(1, method, route, class)
    self.duration:observe((now() - started_ms) / 1000, method, route, class)
  else
    self.requests:inc(1, method, route, "1xx")
  end
end

return M
