-- The C wait protocol (runtime/rt_lua_wait.c) seen from Lua, binding by
-- binding: a task that is already cancelled never starts to wait (it gets
-- nil, "cancelled" at once, and the operation it would have waited on is
-- aborted or never sent, so the object stays usable); a wait's own time
-- limit (a record in the scheduler's timer heap) ends it with nil,
-- "timeout" and leaves no waiter behind; a deadline scope ends any wait
-- with nil, "timeout"; and the same failure reads the same word from
-- every binding (runtime/rt_err.h). Needs the PostgreSQL and Redis of
-- CHORUS_TEST_PG and CHORUS_TEST_REDIS.
local native = require "chorus.native"
local sched = require "chorus.sched"
local pg = require "chorus.db.pg"
local redis = require "chorus.db.redis"
local client = require "chorus.http.client"

local PG = os.getenv("CHORUS_TEST_PG")
local REDIS = os.getenv("CHORUS_TEST_REDIS")

if not PG or PG == "" or not REDIS or REDIS == "" then
  describe("the wait protocol #postgres #redis", function()
    pending("CHORUS_TEST_PG and CHORUS_TEST_REDIS are not set")
  end)
  return
end

-- The values fn(...) returns when called in a task that cancelled itself
-- first, and how long it took (ms).
local function in_cancelled_task(fn, ...)
  local got, took
  local t = sched.spawn(function(...)
    native.current():cancel()
    local t0 = sched.now()
    got = { fn(...) }
    took = sched.now() - t0
  end, ...)
  assert.same({ nil, "cancelled" }, { t:join() })
  return got, took
end

-- The values fn(...) returns when a deadline scope of ms passes while it
-- waits.
local function in_scope(ms, fn, ...)
  assert.is_true(native.scope_open(ms))
  local got = { fn(...) }
  assert.is_true(native.scope_close())
  return got
end

-- A local HTTP server whose handlers answer after 5 s; close() closes it
-- and cancels the handlers still waiting.
local function slow_server()
  local handlers = {}
  local srv = assert(native.http_listen({ host = "127.0.0.1", port = 0 }, function(_, h)
    handlers[#handlers + 1] = native.current()
    sched.sleep(5000)
    h:respond(200, nil, "late")
  end))
  local function close()
    srv:close(0)
    for _, t in ipairs(handlers) do t:cancel() end
  end
  return close, "http://127.0.0.1:" .. srv:port()
end

describe("the wait protocol #postgres #redis", function()
  describe("a task already cancelled gets nil, \"cancelled\" at once", function()
    it("from the scheduler's waits", function()
      local got, took = in_cancelled_task(sched.sleep, 1000)
      assert.same({ nil, "cancelled" }, got)
      assert.is_true(took < 100, "took " .. took)
      assert.same({ nil, "cancelled" }, in_cancelled_task(sched.sleep, 0))
      assert.same({ nil, "cancelled" }, in_cancelled_task(native.suspend))
      local other = sched.spawn(sched.sleep, 1000)
      assert.same({ nil, "cancelled" }, in_cancelled_task(sched.wait_all, { other }))
      other:cancel()
    end)

    it("from PostgreSQL, whose connection stays usable", function()
      local c = assert(pg.connect(PG))
      local got = in_cancelled_task(function() return c:query("SELECT pg_sleep(5)") end)
      assert.is_nil(got[1])
      assert.equal("cancelled", got[2])
      assert.same({ nil, "cancelled" }, in_cancelled_task(function()
        return c:wait_notification(1000)
      end))
      -- No waiter was left behind: the next wait is not "busy".
      assert.same({ nil, "timeout" }, { c:wait_notification(20) })
      assert.equal(1, c:query("SELECT 1 AS x").rows[1].x)
      c:close()
    end)

    it("from Redis, which never sends the command", function()
      local c = assert(redis.connect(REDIS))
      local key = "chorus:spec:wait:" .. native.uuid()
      assert.same({ nil, "cancelled" }, in_cancelled_task(function()
        return c:call("SET", key, "x")
      end))
      assert.equal(redis.null, c:call("GET", key))
      local sub = assert(redis.subscriber(REDIS))
      assert.is_true(sub:subscribe(key))
      assert.same({ nil, "cancelled" }, in_cancelled_task(function()
        return sub:next_message(1000)
      end))
      assert.same({ nil, "timeout" }, { sub:next_message(20) })
      assert.equal(1, c:call("PUBLISH", key, "hello"))
      assert.same({ channel = key, payload = "hello" }, sub:next_message(1000))
      sub:close()
      c:close()
    end)

    it("from an HTTP request, whose transfer is aborted", function()
      local close, url = slow_server()
      local got, took = in_cancelled_task(client.get, url .. "/slow")
      assert.same({ nil, "cancelled", "cancelled" }, got)
      assert.is_true(took < 1000, "took " .. took)
      assert.equal(0, native.curl_active())
      -- A streamed response: the read of a cancelled task aborts it.
      local stream = native.curl_open({ url = url .. "/slow" })
      assert.is_truthy(stream)
      assert.same({ nil, "cancelled" }, in_cancelled_task(function()
        return stream:read()
      end))
      assert.equal(0, native.curl_active())
      assert.same({ nil, "cancelled", "" }, { stream:read() })
      close()
    end)

    it("from a child process, which keeps running", function()
      local p = assert(native.spawn_process({ "sleep", "5" }, { stdin = "null" }))
      assert.same({ nil, "cancelled" }, in_cancelled_task(function() return p:wait() end))
      assert.is_true(p:kill("TERM"))
      assert.same({ 143, "SIGTERM" }, { p:wait() })
    end)
  end)

  describe("a deadline scope ends any wait with nil, \"timeout\"", function()
    it("in every binding, and the objects stay usable", function()
      local c = assert(pg.connect(PG))
      local got = in_scope(50, function() return c:query("SELECT pg_sleep(5)") end)
      assert.is_nil(got[1])
      assert.equal("timeout", got[2])
      assert.equal(1, c:query("SELECT 1 AS x").rows[1].x)
      assert.same({ nil, "timeout" }, in_scope(30, function() return c:wait_notification() end))
      assert.same({ nil, "timeout" }, { c:wait_notification(10) })
      c:close()

      local sub = assert(redis.subscriber(REDIS))
      assert.is_true(sub:subscribe("chorus:spec:wait:scope"))
      assert.same({ nil, "timeout" }, in_scope(30, function() return sub:next_message() end))
      assert.same({ nil, "timeout" }, { sub:next_message(10) })
      sub:close()

      local close, url = slow_server()
      assert.same({ nil, "timeout", "timeout" }, in_scope(50, client.get, url .. "/slow"))
      assert.equal(0, native.curl_active())
      close()

      assert.same({ nil, "timeout" }, in_scope(20, sched.sleep, 5000))
    end)
  end)

  describe("a wait's own time limit", function()
    it("ends it with nil, \"timeout\" once, and many run at once", function()
      local c = assert(pg.connect(PG))
      local sub = assert(redis.subscriber(REDIS))
      assert.is_true(sub:subscribe("chorus:spec:wait:own"))
      local t0 = sched.now()
      local tasks = {
        sched.spawn(function() return c:wait_notification(40) end),
        sched.spawn(function() return sub:next_message(40) end),
      }
      for i = 1, 50 do tasks[#tasks + 1] = sched.spawn(sched.sleep, 20 + i) end
      local results = {}
      for i, t in ipairs(tasks) do results[i] = { t:join() } end
      assert.same({ true, nil, "timeout" }, results[1])
      assert.same({ true, nil, "timeout" }, results[2])
      for i = 3, #tasks do assert.same({ true, true }, results[i]) end
      assert.is_true(sched.now() - t0 >= 39)
      c:close()
      sub:close()
    end)
  end)

  describe("the same failure reads the same word everywhere", function()
    it("a refused connection is \"connection refused\"", function()
      local c, err, info = pg.connect("postgresql://postgres@127.0.0.1:1/x")
      assert.is_nil(c)
      assert.equal("connection refused", info.code)
      assert.matches("^connection refused: ", err)
      local cl
      cl, err = redis.connect("redis://127.0.0.1:1/0")
      assert.is_nil(cl)
      assert.equal("connection refused", err)
      local res, _, kind = client.get("http://127.0.0.1:1/")
      assert.is_nil(res)
      assert.equal("connection refused", kind)
    end)
  end)
end)
