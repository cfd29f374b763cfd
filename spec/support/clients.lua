-- spec/support/clients.lua: real clients for specs that serve HTTP in
-- the spec's own process or in a `chorus serve` they started: curl, bash's
-- /dev/tcp for raw bytes, node's built-in WebSocket.
--
-- A client must never block the loop (the server may run on it): every
-- client runs as a background shell job, `(cmd) >out 2>err; echo $? >rc`
-- started with `... &` (os.execute returns as soon as the shell forked
-- it), and the spec polls for the rc file with sched.sleep. The rc file is
-- written under a temporary name and renamed, so it is never read
-- half-written. Needs curl, bash, and node >= 20.10 (global WebSocket;
-- node 20/21 need --experimental-websocket, which setup() detects).
local sched = require "chorus.sched"
local json = require "chorus.json"

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp) == 0)
local seq = 0

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- bg(cmd) -> job: cmd runs in the background; job:wait(ms) -> rc, out, err
local Job = {}
Job.__index = Job

local function bg(cmd)
  seq = seq + 1
  local base = ("%s/job%d"):format(tmp, seq)
  local script = ("(%s) >%s.out 2>%s.err </dev/null; echo $? >%s.tmp; mv %s.tmp %s.rc")
    :format(cmd, base, base, base, base, base)
  assert(os.execute("(" .. script .. ") >/dev/null 2>&1 </dev/null &") == 0)
  return setmetatable({ base = base }, Job)
end

function Job:done()
  return slurp(self.base .. ".rc") ~= nil
end

function Job:wait(ms)
  local deadline = sched.now() + (ms or 15000)
  while true do
    local rc = slurp(self.base .. ".rc")
    if rc then
      return tonumber(rc:match("%d+")), slurp(self.base .. ".out"), slurp(self.base .. ".err")
    end
    if sched.now() > deadline then error("client job timed out: " .. self.base, 2) end
    sched.sleep(5)
  end
end

local function run(cmd, ms) return bg(cmd):wait(ms) end

-- Parses `curl -i` output: status, headers (lower-case names), body.
local function parse_response(out)
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local status = tonumber(head:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do
    headers[name:lower()] = value
  end
  return { status = status, headers = headers, body = body }
end

-- curl(srv, path, args) -> response table | nil, rc, stderr
local function curl_job(srv, path, args)
  return bg(("curl -sS -i --max-time 20 %s %s"):format(args or "",
    q(("http://127.0.0.1:%d%s"):format(srv.port, path))))
end

local function finish_curl(job, ms)
  local rc, out, err = job:wait(ms)
  if rc ~= 0 then return nil, rc, err end
  return parse_response(out)
end

local function curl(srv, path, args, ms)
  return finish_curl(curl_job(srv, path, args), ms)
end

-- raw(srv, bytes) -> what the server sent back before closing
local function raw(srv, bytes)
  local file = ("%s/raw%d"):format(tmp, seq + 1)
  write(file, bytes)
  local rc, out = run(("bash -c %s"):format(q(
    ("exec 3<>/dev/tcp/127.0.0.1/%d && cat %s >&3 && timeout 10 cat <&3")
      :format(srv.port, file))))
  return out, rc
end

-- ---- node WebSocket client ---------------------------------------------

local NODE_CLIENT = [[
// ws client: node client.js URL SEND_JSON EXPECT_N [PAUSE_MS]
// Sends each string of SEND_JSON once open, collects messages until
// EXPECT_N arrived (then closes with 1000) or the server closes; prints
// {"got": [...], "code": n}.
const [url, sendJson, expectN] = process.argv.slice(2);
const toSend = JSON.parse(sendJson), want = Number(expectN);
const got = [];
const ws = new WebSocket(url);
let closing = false;
ws.onopen = () => { for (const m of toSend) ws.send(m); };
ws.onmessage = (e) => {
  got.push(typeof e.data === "string" ? e.data : "<binary>");
  if (want > 0 && got.length >= want && !closing) { closing = true; ws.close(1000); }
};
ws.onclose = (e) => { console.log(JSON.stringify({ got, code: e.code })); process.exit(0); };
ws.onerror = () => {};
setTimeout(() => { console.log(JSON.stringify({ got, timeout: true })); process.exit(3); }, 15000);
]]

local node_cmd

local function node_ws(srv, path, send, expect_n)
  return bg(("%s %s %s %s %d"):format(node_cmd, q(tmp .. "/client.js"),
    q(("ws://127.0.0.1:%d%s"):format(srv.port, path)), q(json.encode(send or json.array())),
    expect_n or 0))
end

local function node_result(job)
  local rc, out, err = job:wait(20000)
  assert(rc == 0, ("node client failed (rc %s): %s %s"):format(tostring(rc), out, err))
  return assert(json.decode(out))
end

-- A client that completes the handshake and then never reads a byte.
local WS_HANDSHAKE = "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
  .. "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
  .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

-- job:stop() ends it (its sleep's pid is in a file).
local function stuck_ws_client(srv, path, seconds)
  local file = ("%s/hs%d"):format(tmp, seq + 1)
  local pidfile = file .. ".pid"
  write(file, WS_HANDSHAKE:format(path))
  local job = bg(("bash -c %s"):format(q(
    ("exec 3<>/dev/tcp/127.0.0.1/%d && cat %s >&3 && { sleep %d & echo $! >%s; wait; }")
      :format(srv.port, file, seconds, pidfile))))
  function job.stop()
    local pid = slurp(pidfile)
    if pid and pid:match("^%d+") then os.execute("kill " .. pid:match("^%d+") .. " 2>/dev/null") end
    return job:wait()
  end
  return job
end


-- setup(): writes the node client and finds how to run node with a
-- global WebSocket. Call once (in a describe's setup).
local function setup()
  write(tmp .. "/client.js", NODE_CLIENT)
  if run("node -e \"process.exit(typeof WebSocket === 'function' ? 0 : 1)\"") == 0 then
    node_cmd = "node"
  elseif run("node --experimental-websocket -e \"process.exit(typeof WebSocket === 'function' ? 0 : 1)\"") == 0 then
    node_cmd = "node --experimental-websocket"
  end
  return node_cmd ~= nil
end

return {
  tmp = tmp, q = q, slurp = slurp, write = write, bg = bg, run = run, parse_response = parse_response,
  curl_job = curl_job, finish_curl = finish_curl, curl = curl, raw = raw, node_ws = node_ws,
  node_result = node_result, stuck_ws_client = stuck_ws_client, setup = setup,
  cleanup = function() os.execute("rm -rf " .. q(tmp)) end,
}
