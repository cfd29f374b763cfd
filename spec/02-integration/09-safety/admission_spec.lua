-- Admission control: a node refuses work past what it can hold (429 with
-- Retry-After), long list answers are built in slices, and one client
-- address cannot take every connection. #postgres
local h = require "spec.helpers"
local c = require "spec.support.clients"
local client = require "chorus.http.client"
local json = require "chorus.json"
local sched = require "chorus.sched"

local function serve(args)
  local log = os.tmpname()
  local pid = h.spawn(("%s serve --listen 127.0.0.1:0 --no-auth %s"):format(h.binary, args or ""), log)
  local port
  assert(h.wait_until(function()
    port = tonumber(table.concat(h.read_lines(log), "\n"):match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not h.alive(pid)
  end, 10000), "serve did not start")
  assert(port, "serve failed: " .. table.concat(h.read_lines(log), "\n"))
  return { pid = pid, base = "http://127.0.0.1:" .. port, port = port }
end

local function stop(s)
  h.kill(s.pid)
  assert.is_true(h.wait_exit(s.pid, 15000))
end

local function post(s, path, body)
  return assert(client.request({ method = "POST", url = s.base .. path, timeout_ms = 10000,
    headers = { ["content-type"] = "application/json" }, body = json.encode(body) }))
end

describe("admission control", function()
  local has_node
  setup(function() has_node = c.setup() end)
  teardown(function() c.cleanup() end)

  it("past --max-inflight, execute answers 429 with Retry-After, and takes work again once it drains", function()
    local s = serve("--max-inflight 3")
    local slow = { config = h.flat("sequential", { { id = "d", agent = "delay", params = { ms = 400 } } }) }
    for _ = 1, 3 do assert.equal(202, post(s, "/api/v1/orchestrations/execute", slow).status) end
    local res = post(s, "/api/v1/orchestrations/execute", slow)
    assert.equal(429, res.status)
    assert.equal("1", res.headers["retry-after"])
    local body = json.decode(res.body)
    assert.equal("too_many_requests", body.error.code)
    assert.matches("3 executions in flight", body.error.message)
    assert(h.wait_until(function()
      return post(s, "/api/v1/orchestrations/execute", slow).status == 202
    end, 5000), "never admitted again")
    stop(s)
  end)

  it("twenty lists of 1,000 executions at once do not stall /healthz", function()
    local s = serve()
    local quick = { config = h.flat("sequential", { { id = "e", agent = "echo" } }) }
    local tasks = {}
    for w = 1, 8 do
      tasks[w] = sched.spawn(function()
        for _ = 1, 250 do assert.equal(202, post(s, "/api/v1/orchestrations/execute", quick).status) end
      end)
    end
    sched.wait_all(tasks)
    local lists, worst, listing = {}, 0, true
    for i = 1, 20 do
      lists[i] = sched.spawn(function()
        local r = assert(client.request({ url = s.base .. "/api/v1/orchestrations/executions?limit=1000",
          timeout_ms = 30000 }))
        assert.equal(200, r.status)
        assert.equal(1000, #json.decode(r.body).items)
      end)
    end
    local probe = sched.spawn(function()
      while listing do
        local t0 = sched.now()
        local r = assert(client.request({ url = s.base .. "/healthz", timeout_ms = 10000 }))
        assert.equal(200, r.status)
        worst = math.max(worst, sched.now() - t0)
        sched.sleep(10)
      end
    end)
    sched.wait_all(lists)
    listing = false
    probe:join()
    assert.is_true(worst < 1000, "a /healthz took " .. worst .. " ms")
    stop(s)
  end)

  it("one client address cannot take every connection; another still gets in", function()
    if not has_node then pending("node is not available") return end
    local s = serve("--max-client-conns 20")
    local script = os.tmpname() .. ".js"
    h.write(script, ([[
      const net = require('net');
      const port = %d, held = [], answers = [];
      function open(local) {
        return new Promise((resolve) => {
          const sock = net.connect({ host: '127.0.0.1', port, localAddress: local });
          let data = '';
          sock.on('data', (d) => { data += d; });
          sock.on('error', () => {});
          sock.on('connect', () => { held.push(sock); setTimeout(() => resolve(data), 300); });
        });
      }
      (async () => {
        for (let i = 0; i < 25; i++) answers.push(await open('127.0.0.1'));
        const refused = answers.filter((a) => a.startsWith('HTTP/1.1 429')).length;
        const other = await new Promise((resolve) => {
          const sock = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () => {
            sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
          });
          let data = '';
          sock.on('data', (d) => { data += d; });
          sock.on('end', () => resolve(data.split('\r\n')[0]));
          sock.on('error', (e) => resolve('error ' + e.message));
        });
        console.log(JSON.stringify({ refused, other }));
        held.forEach((s) => s.destroy());
      })();
    ]]):format(s.port))
    local rc, out, err = c.run("node " .. script, 30000)
    assert.equal(0, rc, err)
    local r = json.decode(out)
    assert.equal(5, r.refused)
    assert.equal("HTTP/1.1 200 OK", r.other)
    stop(s)
  end)

  it("a PostgreSQL node refuses submits once the pending backlog reaches --max-pending", function()
    if not h.pg_url() then pending("CHORUS_TEST_PG is not set") return end
    local pg = require "chorus.db.pg"
    local url = h.fresh_db("admission")
    local pool = pg.pool(url, { size = 2 })
    local store = require("chorus.store.pg").new({ pool = pool })
    local engine = h.engine({ store = store })
    local node = require("chorus.run.node").new({ engine = engine, pool = pool, claim = false, concurrency = 0,
      max_pending = 3 })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "e", agent = "echo" } })))
    for _ = 1, 3 do assert.is_table(node:submit(cfg, {}, {})) end
    local r, err, code = node:submit(cfg, {}, {})
    assert.is_nil(r)
    assert.equal("busy", code)
    assert.matches("waiting for a node", err)
    store.committer:flush()
    pool:close()
  end)
end)
