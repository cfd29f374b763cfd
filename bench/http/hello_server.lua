-- bench/http/hello_server.lua: a trivial JSON endpoint for load tests.
--   chorus lua bench/http/hello_server.lua [PORT] [SECONDS] [MODE]
-- MODE "table" (default) encodes {ok=true,path=...} per request; "string"
-- returns a constant body. Prints the stats when it stops.
--   wrk -t2 -c50 -d5s http://127.0.0.1:PORT/x
local server = require "chorus.http.server"
local sched = require "chorus.sched"
local json = require "chorus.json"

local port, seconds, mode = tonumber((...)) or 8080, tonumber((select(2, ...))) or 30,
  select(3, ...) or "table"
local HEADERS = { ["content-type"] = "application/json" }
local BODY = '{"ok":true}'

local handler
if mode == "string" then
  handler = function() return 200, HEADERS, BODY end
else
  handler = function(req) return 200, nil, { ok = true, path = req.path } end
end

local srv = assert(server.listen({ port = port, reuseport = true }, handler))
io.stderr:write(("listening on 127.0.0.1:%d (%s bodies) for %ds\n"):format(srv.port, mode, seconds))
sched.sleep(seconds * 1000)
srv:close({ grace_ms = 1000 })
io.stderr:write(json.encode(srv:stats()) .. "\n")
return 0
