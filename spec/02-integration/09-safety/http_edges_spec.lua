-- The HTTP edge: conflicting Content-Length headers are refused (no
-- request smuggling), and a body over --max-body gets a 413 the client
-- can read (lingering close), not a connection reset.
local h = require "spec.helpers"
local c = require "spec.support.clients"
local json = require "chorus.json"

describe("HTTP edges", function()
  local pid, port, has_node
  setup(function()
    has_node = c.setup()
    local log = os.tmpname()
    pid = h.spawn(("%s serve --listen 127.0.0.1:0 --no-auth"):format(h.binary), log)
    assert(h.wait_until(function()
      port = tonumber(table.concat(h.read_lines(log), "\n"):match("listening on 127%.0%.0%.1:(%d+)"))
      return port ~= nil
    end, 10000))
  end)
  teardown(function()
    h.kill(pid)
    h.wait_exit(pid, 10000)
    c.cleanup()
  end)

  -- raw(bytes_js) -> what the server answered to the bytes a node script
  -- writes (a JS expression giving a Buffer), read until it closes.
  local function raw(payload_js)
    local script = os.tmpname() .. ".js"
    h.write(script, ([[
      const net = require('net');
      const s = net.connect({ host: '127.0.0.1', port: %d });
      let got = Buffer.alloc(0), err = null;
      s.on('data', (d) => { got = Buffer.concat([got, d]); });
      s.on('error', (e) => { err = e.code || e.message; });
      s.on('close', () => { console.log(JSON.stringify({ got: got.toString('latin1'), err })); });
      s.on('connect', () => { s.write(%s); });
    ]]):format(port, payload_js))
    local rc, out, errout = c.run("node " .. script, 30000)
    assert.equal(0, rc, errout)
    return json.decode(out)
  end

  it("two Content-Length headers that differ are a 400", function()
    local r = raw([[Buffer.from('POST /api/v1/orchestrations/execute HTTP/1.1\r\nHost: x\r\n' +
      'Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}' +
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')]])
    assert.matches("^HTTP/1%.1 400 ", r.got)
    assert.matches("conflicting Content%-Length headers", r.got)
    assert.is_nil(r.got:find("HTTP/1.1 200", 1, true)) -- nothing smuggled through
    -- the same value twice is one length
    r = raw([[Buffer.from('POST /api/v1/orchestrations/execute HTTP/1.1\r\nHost: x\r\nConnection: close\r\n' +
      'Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}')]])
    assert.matches("^HTTP/1%.1 422 ", r.got)
  end)

  it("a 10 MB body over --max-body gets its 413, read by the client", function()
    if not has_node then pending("node is not available") return end
    for _ = 1, 3 do
      local r = raw([[Buffer.concat([Buffer.from('POST /api/v1/orchestrations/execute HTTP/1.1\r\nHost: x\r\n' +
        'Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n'), Buffer.alloc(10485760, 120)])]])
      assert.matches("^HTTP/1%.1 413 ", r.got)
      assert.equal(json.null, r.err, "the connection was reset: " .. tostring(r.err))
    end
  end)
end)
