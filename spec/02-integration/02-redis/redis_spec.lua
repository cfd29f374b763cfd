-- chorus.db.redis against the real Redis named by CHORUS_TEST_REDIS (port in
-- CHORUS_TEST_REDIS_PORT): reply types, binary values, error replies, many
-- tasks on one client, pipelines and transactions, pub/sub with patterns
-- (next_message and on_message), bounded buffering, cancellation of a
-- blocking command, command timeouts, refused connections, closing and
-- __gc, and Redis going away and coming back (commands fail fast, client
-- and subscriber reconnect, messages flow again). The server is left
-- running as it was found.
local h = require "spec.helpers"
local redis = require "chorus.db.redis"
local sched = require "chorus.sched"
local json = require "chorus.json"
local native = require "chorus.native"
local log = require "chorus.log"

local URL = os.getenv("CHORUS_TEST_REDIS")
local PORT = tonumber(os.getenv("CHORUS_TEST_REDIS_PORT") or "")

if not URL or URL == "" or not PORT then
  describe("chorus.db.redis #redis", function()
    pending("CHORUS_TEST_REDIS and CHORUS_TEST_REDIS_PORT are not set")
  end)
  return
end

-- Keys of our own: runs never collide.
local P = "chorus:spec:" .. native.uuid():sub(1, 8) .. ":"

-- A script that keeps the server busy for ARGV[1] milliseconds.
local BUSY = "local s = redis.call('TIME') local t0 = s[1] * 1e6 + s[2] " ..
  "while true do local n = redis.call('TIME') " ..
  "if n[1] * 1e6 + n[2] - t0 > tonumber(ARGV[1]) * 1000 then break end end return 1"

local function connect(opts)
  return assert(redis.connect(URL, opts))
end

local function wait_until(fn, ms)
  local t0 = sched.now()
  while not fn() do
    if sched.now() - t0 > (ms or 3000) then return false end
    sched.sleep(5)
  end
  return true
end

local function sh(cmd)
  local rc = os.execute(cmd .. " >/dev/null 2>&1")
  return rc == 0
end

local function ping_ok()
  return sh("(redis-cli -p " .. PORT .. " ping 2>&1 | grep -q PONG)")
end

describe("chorus.db.redis #redis", function()
  local c

  setup(function()
    c = connect()
  end)

  teardown(function()
    if c then c:close() end
  end)

  describe("commands", function()
    it("converts every reply type", function()
      assert.equal("OK", c:call("SET", P .. "s", "v"))
      assert.equal("v", c:call("GET", P .. "s"))
      assert.equal("PONG", c:call("PING"))
      assert.equal(1, c:call("DEL", P .. "s"))
      assert.equal(redis.null, c:call("GET", P .. "s"))
      assert.equal(json.null, redis.null)
      assert.equal(3, c:call("RPUSH", P .. "l", "a", "b", "c"))
      assert.same({ "a", "b", "c" }, c:call("LRANGE", P .. "l", 0, -1))
      assert.same({}, c:call("LRANGE", P .. "nothing", 0, -1))
      -- Nested arrays, integers inside arrays.
      local r = c:call("EVAL", "return {1, {2, 'x'}, 'y'}", 0)
      assert.same({ 1, { 2, "x" }, "y" }, r)
      -- Integers beyond 2^53 come as exact decimal strings.
      assert.equal("OK", c:call("SET", P .. "big", "9007199254740993"))
      assert.equal("9007199254740994", c:call("INCR", P .. "big"))
      assert.equal(-5, c:call("DECRBY", P .. "neg", 5))
      -- Numbers as arguments: integers without a decimal point.
      assert.equal("OK", c:call("SET", P .. "n", 42))
      assert.equal("42", c:call("GET", P .. "n"))
      assert.equal("OK", c:call("SET", P .. "f", 0.5))
      assert.equal("0.5", c:call("GET", P .. "f"))
      -- command() takes varargs or one array.
      assert.equal("42", c:command("GET", P .. "n"))
      assert.equal("42", c:command({ "GET", P .. "n" }))
    end)

    it("keeps values binary safe", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local v = table.concat(bytes) .. "\r\n$3\r\n\0end"
      assert.equal("OK", c:call("SET", P .. "bin\0key", v))
      assert.equal(v, c:call("GET", P .. "bin\0key"))
      local big = string.rep("x\0y", 300000)
      assert.equal("OK", c:call("SET", P .. "big2", big))
      assert.equal(big, c:call("GET", P .. "big2"))
    end)

    it("returns error replies as nil, message, 'redis'", function()
      local ok, err, kind = c:call("NOSUCHCOMMAND", "x")
      assert.is_nil(ok)
      assert.matches("^ERR unknown command", err)
      assert.equal("redis", kind)
      c:call("SET", P .. "str", "x")
      ok, err, kind = c:call("LPUSH", P .. "str", "y")
      assert.is_nil(ok)
      assert.matches("^WRONGTYPE", err)
      assert.equal("redis", kind)
      -- Inside an array: {err = ...}.
      local r = c:call("EVAL", "return {1, redis.error_reply('boom')}", 0)
      assert.equal(1, r[1])
      assert.matches("boom", r[2].err)
      -- The client is fine afterwards.
      assert.equal("PONG", c:call("PING"))
    end)

    it("refuses commands that would change the shared connection", function()
      for _, cmd in ipairs({ { "SUBSCRIBE", "x" }, { "select", 1 }, { "MONITOR" },
                             { "CLIENT", "reply", "off" }, { "MULTI" }, { "exec" },
                             { "WATCH", "k" } }) do
        assert.has_error(function() c:call(unpack(cmd)) end)
      end
      assert.has_error(function() c:call(42) end)
      assert.has_error(function() c:call("SET", "k", {}) end)
      assert.has_error(function() c:pipeline({ { "BLPOP", "x", 0 } }) end)
      assert.equal("PONG", c:call("PING"))
    end)

    it("runs 1000 commands from 100 tasks on one client", function()
      local tasks = {}
      for i = 1, 100 do
        tasks[i] = sched.spawn(function()
          local key = P .. "task" .. i
          for j = 1, 5 do
            assert.equal(1, c:call("SADD", P .. "seen", i .. ":" .. j))
            local incr = c:call("INCR", P .. "counter")
            assert.is_number(incr)
            assert.equal("OK", c:call("SET", key, i * 1000 + j))
            assert.equal(tostring(i * 1000 + j), c:call("GET", key))
          end
          return true
        end)
      end
      assert.is_true(sched.wait_all(tasks))
      for i = 1, 100 do assert.same({ true, true }, { tasks[i]:join() }) end
      assert.equal("500", c:call("GET", P .. "counter"))
      assert.equal(500, c:call("SCARD", P .. "seen"))
      assert.equal(0, c:stats().pending)
    end)

    it("pipelines commands and keeps error replies in place", function()
      local r = assert(c:pipeline({
        { "SET", P .. "a", "1" }, { "INCR", P .. "pn" }, { "INCR", P .. "pn" },
        { "GET", P .. "a" }, { "GET", P .. "missing" }, { "LPUSH", P .. "a", "x" },
        { "MGET", P .. "a", P .. "missing" },
      }))
      assert.equal(7, #r)
      assert.equal("OK", r[1])
      assert.equal(1, r[2])
      assert.equal(2, r[3])
      assert.equal("1", r[4])
      assert.equal(redis.null, r[5])
      assert.matches("^WRONGTYPE", r[6].err)
      assert.same({ "1", redis.null }, r[7])
      assert.same({}, c:pipeline({}))
      -- A long pipeline.
      local cmds = {}
      for i = 1, 2000 do cmds[i] = { "INCR", P .. "long" } end
      r = assert(c:pipeline(cmds))
      assert.equal(2000, #r)
      assert.equal(2000, r[2000])
    end)

    it("runs transactions atomically", function()
      local r = assert(c:transaction({
        { "SET", P .. "tx", "1" }, { "INCR", P .. "tx" }, { "LPUSH", P .. "tx", "x" },
      }))
      assert.equal("OK", r[1])
      assert.equal(2, r[2])
      assert.matches("^WRONGTYPE", r[3].err)
      local ok, err, kind = c:transaction({ { "SET", P .. "tx" } })
      assert.is_nil(ok)
      assert.matches("^EXECABORT", err)
      assert.equal("redis", kind)
      assert.equal("2", c:call("GET", P .. "tx"))
    end)
  end)

  describe("cancellation and timeouts", function()
    it("cancels a blocking BLPOP at once and the client stays usable", function()
      local t0 = sched.now()
      local t = sched.spawn(function() return c:call("BLPOP", P .. "empty", 0) end)
      sched.sleep(50)
      assert.equal(1, c:stats().blocking)
      t:cancel()
      assert.same({ nil, "cancelled" }, { t:join() })
      local took = sched.now() - t0
      assert.is_true(took < 150, "took " .. took)
      assert.equal(0, c:stats().blocking)
      -- The shared connection never blocked; a new BLPOP works.
      assert.equal("PONG", c:call("PING"))
      local waiter = sched.spawn(function() return c:call("BLPOP", P .. "empty", 5) end)
      sched.sleep(20)
      assert.equal(1, c:call("RPUSH", P .. "empty", "v"))
      assert.same({ true, { P .. "empty", "v" } }, { waiter:join() })
      -- A BLPOP that times out returns redis.null.
      assert.equal(redis.null, c:call("BLPOP", P .. "empty", 0.05))
    end)

    it("a cancelled pending command: the late reply is discarded", function()
      local t = sched.spawn(function() return c:call("EVAL", BUSY, 0, 100) end)
      sched.sleep(10)
      t:cancel()
      assert.same({ nil, "cancelled" }, { t:join() })
      -- The next reply on the connection is this command's own.
      assert.equal("after", c:call("ECHO", "after"))
    end)

    it("the task's deadline ends a wait with timeout", function()
      local t = sched.spawn_with({ timeout_ms = 30 }, function()
        return c:call("EVAL", BUSY, 0, 100)
      end)
      assert.same({ nil, "timeout" }, { t:join() })
      assert.equal("ok", c:call("ECHO", "ok"))
    end)

    it("command_timeout_ms fails a slow command with timeout", function()
      local fast = connect({ command_timeout_ms = 50 })
      local t0 = sched.now()
      assert.same({ nil, "timeout" }, { fast:call("EVAL", BUSY, 0, 200) })
      local took = sched.now() - t0
      assert.is_true(took >= 45 and took < 150, "took " .. took)
      -- Once the server is free again, the late reply is discarded and the
      -- connection is usable.
      sched.sleep(200)
      assert.equal("fresh", fast:call("ECHO", "fresh"))
      assert.equal(1, fast:stats().timeouts)
      assert.is_true(fast:connected())
      fast:close()
    end)
  end)

  describe("failures", function()
    it("reports a refused connection", function()
      local t0 = sched.now()
      local cl, err = redis.connect("redis://127.0.0.1:1/0")
      assert.is_nil(cl)
      assert.matches("refused", err)
      assert.is_true(sched.now() - t0 < 1000)
      local sub
      sub, err = redis.subscriber("redis://127.0.0.1:1")
      assert.is_nil(sub)
      assert.matches("refused", err)
    end)

    it("reports bad urls and options", function()
      assert.same({ nil, "bad url: expected a string, got nil" }, { redis.connect(nil) })
      assert.matches("^bad url", select(2, redis.connect("http://x")))
      assert.matches("TLS", select(2, redis.connect("rediss://x")))
      assert.matches("db number", select(2, redis.connect("redis://h:1/abc")))
      assert.same({ host = "::1", port = 7000, db = 3, user = "u", password = "p@ss" },
        redis.parse_url("redis://u:p%40ss@[::1]:7000/3"))
      assert.same({ host = "h", port = 6379, password = "pw" }, redis.parse_url("redis://:pw@h"))
      assert.same({ path = "/tmp/r.sock", db = 2 }, redis.parse_url("unix:///tmp/r.sock?db=2"))
      assert.has_error(function() redis.connect(URL, { connect_timeout_ms = "x" }) end)
    end)

    it("a wrong password fails the connect with the server's error", function()
      local cl, err = redis.connect(URL, { password = "wrong" })
      assert.is_nil(cl)
      assert.is_string(err)
      assert.matches("AUTH", err)
    end)

    it("close fails pending commands and later ones with closed", function()
      local cl = connect()
      local t = sched.spawn(function() return cl:call("EVAL", BUSY, 0, 50) end)
      local b = sched.spawn(function() return cl:call("BLPOP", P .. "never", 0) end)
      sched.sleep(10)
      cl:close()
      assert.same({ true, nil, "closed" }, { t:join() })
      assert.same({ true, nil, "closed" }, { b:join() })
      assert.same({ nil, "closed" }, { cl:call("PING") })
      assert.same({ nil, "closed" }, { cl:pipeline({ { "PING" } }) })
      assert.is_false(cl:connected())
      assert.equal("closed", cl:stats().state)
      cl:close() -- idempotent
    end)

    it("closes connections of collected clients", function()
      local name = "gc" .. native.uuid():sub(1, 8)
      local function present()
        return c:call("CLIENT", "LIST"):find("name=" .. name, 1, true) ~= nil
      end
      -- In a function of its own, so no dead register keeps it alive.
      local function use_and_drop()
        local cl = connect()
        assert.equal("OK", cl:call("CLIENT", "SETNAME", name))
        assert.is_true(present())
      end
      use_and_drop()
      collectgarbage()
      collectgarbage()
      assert.is_true(wait_until(function() return not present() end, 2000))
    end)
  end)

  describe("pub/sub", function()
    it("delivers channel and pattern messages with next_message", function()
      local sub = assert(redis.subscriber(URL))
      assert.is_true(sub:subscribe(P .. "ch1", P .. "ch2"))
      assert.is_true(sub:psubscribe(P .. "p.*"))
      assert.equal(1, c:call("PUBLISH", P .. "ch1", "hello\0world"))
      assert.same({ channel = P .. "ch1", payload = "hello\0world" }, sub:next_message(1000))
      assert.equal(1, c:call("PUBLISH", P .. "p.x", "pat"))
      assert.same({ channel = P .. "p.x", payload = "pat", pattern = P .. "p.*" },
        sub:next_message(1000))
      -- Timeouts, polling, and one waiter at a time.
      local t0 = sched.now()
      assert.same({ nil, "timeout" }, { sub:next_message(30) })
      assert.is_true(sched.now() - t0 >= 29)
      assert.same({ nil, "timeout" }, { sub:next_message(0) })
      local w = sched.spawn(function() return sub:next_message(1000) end)
      sched.sleep(5)
      assert.same({ nil, "busy" }, { sub:next_message(10) })
      c:call("PUBLISH", P .. "ch2", "two")
      assert.same({ true, { channel = P .. "ch2", payload = "two" } }, { w:join() })
      -- Unsubscribed channels deliver nothing more.
      assert.is_true(sub:unsubscribe(P .. "ch1"))
      assert.is_true(sub:punsubscribe(P .. "p.*"))
      c:call("PUBLISH", P .. "ch1", "gone")
      c:call("PUBLISH", P .. "p.y", "gone")
      c:call("PUBLISH", P .. "ch2", "kept")
      assert.equal("kept", sub:next_message(1000).payload)
      local st = sub:stats()
      assert.equal(1, st.channels)
      assert.equal(0, st.patterns)
      -- The connection only takes subscriptions.
      assert.has_error(function() native.redis_command(sub.h, "PING") end)
      -- Closing ends a wait with closed.
      w = sched.spawn(function() return sub:next_message() end)
      sched.sleep(5)
      sub:close()
      assert.same({ true, nil, "closed" }, { w:join() })
      assert.same({ nil, "closed" }, { sub:subscribe("x") })
      assert.same({ nil, "closed" }, { sub:next_message(10) })
    end)

    it("runs on_message handlers in tasks and logs failures", function()
      require("spec.support.log_guard").expect("redis subscriber: handler failed") -- on purpose
      local logged = {}
      local sink = log.sink
      log.sink = { write = function(_, s) logged[#logged + 1] = s end }
      finally(function() log.sink = sink end)
      local sub = assert(redis.subscriber(URL))
      assert.is_true(sub:psubscribe(P .. "ev.*"))
      local got, running, peak = {}, 0, 0
      sub:on_message(function(m)
        running = running + 1
        if running > peak then peak = running end
        sched.sleep(5)
        got[#got + 1] = m.payload
        running = running - 1
        if m.payload == "bad" then error("handler failed on purpose") end
      end, { concurrency = 4 })
      assert.has_error(function() sub:next_message(1) end)
      for i = 1, 20 do c:call("PUBLISH", P .. "ev." .. i, tostring(i)) end
      c:call("PUBLISH", P .. "ev.x", "bad")
      assert.is_true(wait_until(function() return #got == 21 end))
      assert.is_true(peak <= 4 and peak >= 2, "peak " .. peak)
      table.sort(got)
      assert.equal("1", got[1])
      sub:close()
      assert.is_true(wait_until(function() return sub.pump:done() end))
      assert.equal(1, #logged)
      assert.matches("handler failed on purpose", logged[1])
    end)

    it("drops the oldest messages beyond max_queue and counts them", function()
      local sub = assert(redis.subscriber(URL, { max_queue = 3 }))
      assert.is_true(sub:subscribe(P .. "flood"))
      for i = 1, 10 do c:call("PUBLISH", P .. "flood", tostring(i)) end
      assert.is_true(wait_until(function() return sub:stats().messages == 10 end))
      local st = sub:stats()
      assert.equal(7, st.drops)
      assert.equal(3, st.queued)
      assert.equal("8", sub:next_message(100).payload)
      assert.equal("9", sub:next_message(100).payload)
      assert.equal("10", sub:next_message(100).payload)
      sub:close()
    end)
  end)

  describe("when Redis goes away and comes back", function()
    it("fails fast, then the client and the subscriber reconnect", function()
      -- The server's own settings, so it restarts as it was.
      local start = h.redis_restart_command(PORT)
      -- Whatever happens below, the server is running again at the end.
      finally(function()
        if not ping_ok() then
          sh(start)
          for _ = 1, 100 do
            if ping_ok() then break end
            sh("sleep 0.05")
          end
        end
      end)

      local cl = connect({ backoff_min_ms = 20, backoff_max_ms = 200 })
      local sub = assert(redis.subscriber(URL, { backoff_min_ms = 20, backoff_max_ms = 200 }))
      assert.is_true(sub:subscribe(P .. "live"))
      local got, states = {}, {}
      sub:on_message(function(m) got[#got + 1] = m.payload end,
        { on_state = function(s) states[#states + 1] = s end })
      assert.equal(1, cl:call("PUBLISH", P .. "live", "before"))
      assert.is_true(wait_until(function() return #got == 1 end))

      -- Down. (os.execute blocks the loop: nobody notices until it returns.)
      sh("redis-cli -p " .. PORT .. " shutdown nosave")
      for _ = 1, 100 do
        if not ping_ok() then break end
        sh("sleep 0.05")
      end
      assert.is_false(ping_ok())
      local t0 = sched.now()
      local ok, err = cl:call("PING")
      assert.is_nil(ok)
      assert.is_truthy(err == "closed" or err == "disconnected", err)
      assert.is_true(wait_until(function() return not cl:connected() end, 1000))
      assert.same({ nil, "disconnected" }, { cl:call("GET", P .. "x") })
      assert.same({ nil, "disconnected" }, { cl:pipeline({ { "PING" } }) })
      assert.same({ nil, "disconnected" }, { cl:call("BLPOP", P .. "x", 0) })
      assert.is_true(sched.now() - t0 < 1000)
      assert.is_true(wait_until(function() return not sub:connected() end, 1000))
      assert.is_true(wait_until(function() return states[1] == "disconnected" end, 1000))
      -- A subscription made while down is kept for later.
      assert.same({ nil, "disconnected" }, { sub:subscribe(P .. "later") })
      sched.sleep(100) -- a few failed attempts
      assert.is_true(cl:stats().errors >= 2)
      local state = cl:stats().state -- between attempts, or in one
      assert.is_truthy(state == "disconnected" or state == "connecting", state)
      assert.is_false(cl:connected())

      -- Up again.
      assert.is_true(sh(start))
      assert.is_true(wait_until(ping_ok, 5000))
      assert.is_true(wait_until(function() return cl:connected() end, 5000))
      assert.is_true(wait_until(function() return sub:connected() end, 5000))
      assert.equal("PONG", cl:call("PING"))
      assert.equal(1, cl:stats().reconnects)
      assert.equal(1, sub:stats().reconnects)
      assert.is_true(wait_until(function() return states[2] == "connected" end, 1000))
      -- Resubscribed: both the old channel and the one added while down.
      assert.equal(1, cl:call("PUBLISH", P .. "live", "after"))
      assert.equal(1, cl:call("PUBLISH", P .. "later", "later"))
      assert.is_true(wait_until(function() return #got == 3 end))
      table.sort(got)
      assert.same({ "after", "before", "later" }, got)
      -- The shared client (setup's) came back too.
      assert.is_true(wait_until(function() return c:connected() end, 5000))
      assert.equal("PONG", c:call("PING"))
      -- Its idle connections for blocking commands died with the server:
      -- they are replaced, not used.
      assert.equal(redis.null, c:call("BLPOP", P .. "empty", 0.05))
      sub:close()
      cl:close()
    end)
  end)

end)
