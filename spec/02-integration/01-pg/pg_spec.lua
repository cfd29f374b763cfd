-- chorus.db.pg against the real PostgreSQL named by CHORUS_TEST_PG: queries,
-- parameters, NULLs, types and JSON, metacharacters as data, server errors
-- with SQLSTATE, batches (atomic, pipelined), scripts, LISTEN/NOTIFY,
-- cancellation and deadlines, closing, pools (concurrency, waiting,
-- transactions, backoff), refused connections, a dropped connection in a
-- transaction, a server restart, and no connection left open.
local pg = require "chorus.db.pg"
local sched = require "chorus.sched"
local json = require "chorus.json"
local native = require "chorus.native"

local URL = os.getenv("CHORUS_TEST_PG")
local PG_DIR = os.getenv("CHORUS_TEST_PG_DIR")
local PG_BIN = os.getenv("CHORUS_TEST_PG_BIN")
local REFUSED = "postgresql://postgres@127.0.0.1:1/nothing"

if not URL or URL == "" then
  describe("chorus.db.pg #postgres", function()
    pending("CHORUS_TEST_PG is not set")
  end)
  return
end

-- A table name of our own: runs never collide.
local function unique(prefix)
  return (prefix or "t") .. "_" .. native.uuid():gsub("-", ""):sub(1, 16)
end

local admin -- a connection for looking at the server from outside

local function connect()
  return assert(pg.connect(URL, { connect_timeout_ms = 5000 }))
end

local function scalar(sql, ...)
  local res = assert(admin:query(sql, ...))
  local row = res.rows[1]
  return row and row[res.columns[1]]
end

local function count(tbl)
  return scalar("SELECT count(*) AS n FROM " .. tbl)
end

-- Is a pg_sleep running in backend pid?
local function sleeping(pid)
  return scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 " ..
                "AND state = 'active' AND query LIKE '%pg_sleep%'", pid) == 1
end

local function wait_until(fn, ms)
  local t0 = sched.now()
  while not fn() do
    if sched.now() - t0 > ms then return false end
    sched.sleep(10)
  end
  return true
end

-- Client sessions on our database other than admin's.
local function others()
  return scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = " ..
                "current_database() AND backend_type = 'client backend' " ..
                "AND pid <> pg_backend_pid()")
end

describe("chorus.db.pg #postgres", function()
  local tables = {}

  local function new_table(ddl_cols)
    local name = unique()
    tables[#tables + 1] = name
    assert(admin:query(("CREATE TABLE %s (%s)"):format(name, ddl_cols)))
    return name
  end

  setup(function()
    admin = connect()
  end)

  teardown(function()
    for _, t in ipairs(tables) do admin:query("DROP TABLE IF EXISTS " .. t) end
    admin:close()
  end)

  describe("queries", function()
    local c
    before_each(function() c = connect() end)
    after_each(function() c:close() end)

    it("returns rows keyed by column, with the columns in order", function()
      local res = assert(c:query("SELECT 1 AS a, 'two' AS b UNION ALL SELECT 3, 'four'"))
      assert.same({ "a", "b" }, res.columns)
      assert.same({ { a = 1, b = "two" }, { a = 3, b = "four" } }, res.rows)
      assert.equal(2, res.affected)
      assert.equal("SELECT", res.command)
    end)

    it("converts types by OID; NULL leaves the key out", function()
      local res = assert(c:query([[
        SELECT 1::int2 AS i2, 2::int4 AS i4, 3000000000::int8 AS i8,
               4.5::float4 AS f4, 0.1::float8 AS f8, 1.25::numeric AS num,
               42::oid AS o, true AS t, false AS f, 'x'::text AS s,
               NULL::int AS n, 'NaN'::float8 AS nan,
               '{"a":[1,2],"b":{"c":"d"}}'::json AS j,
               '{"e":null,"f":true}'::jsonb AS jb, '[]'::jsonb AS ja,
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
               ARRAY[1,2] AS arr, '\x0102'::bytea AS by,
               '2024-01-02 03:04:05+00'::timestamptz AS ts]]))
      local r = res.rows[1]
      assert.equal(1, r.i2); assert.equal(2, r.i4); assert.equal(3000000000, r.i8)
      assert.equal(4.5, r.f4); assert.equal(0.1, r.f8); assert.equal(1.25, r.num)
      assert.equal(42, r.o)
      assert.is_true(r.t); assert.is_false(r.f)
      assert.equal("x", r.s)
      assert.is_nil(r.n)
      assert.is_true(r.nan ~= r.nan)
      assert.same({ a = { 1, 2 }, b = { c = "d" } }, r.j)
      assert.equal(json.null, r.jb.e); assert.is_true(r.jb.f)
      assert.same({}, r.ja)
      assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", r.u)
      assert.equal("{1,2}", r.arr)
      assert.equal("\\x0102", r.by)
      assert.is_string(r.ts)
      assert.equal(19, #res.columns)
      assert.equal("n", res.columns[11]) -- a NULL column is still listed
    end)

    it("sends parameters: nil, booleans, numbers, strings, tables", function()
      local res = assert(c:query(
        "SELECT $1::int IS NULL AS isnull, $2::bool AS b, $3::int8 AS big, " ..
        "$4::float8 AS fl, $5::text AS s, $6::jsonb AS doc, $7::text AS last",
        nil, true, 2 ^ 40, 0.1, "it's", { k = { 1, "two" } }, nil))
      local r = res.rows[1]
      assert.is_true(r.isnull)
      assert.is_true(r.b)
      assert.equal(2 ^ 40, r.big)
      assert.equal(0.1, r.fl)
      assert.equal("it's", r.s)
      assert.same({ k = { 1, "two" } }, r.doc)
      assert.is_nil(r.last) -- the trailing nil counted as $7
      -- integers travel without exponent; json.null is NULL too
      r = assert(c:query("SELECT $1::text AS t, $2::int IS NULL AS n", 1e15, json.null)).rows[1]
      assert.equal("1000000000000000", r.t)
      assert.is_true(r.n)
    end)

    it("round-trips JSON through a jsonb column", function()
      local t = new_table("id serial PRIMARY KEY, doc jsonb")
      local doc = { name = "x", list = { 1, 2, 3 }, nested = { ok = true } }
      assert(c:query("INSERT INTO " .. t .. " (doc) VALUES ($1)", doc))
      local res = assert(c:query("SELECT doc FROM " .. t))
      assert.same(doc, res.rows[1].doc)
    end)

    it("keeps SQL metacharacters in parameters as data", function()
      local t = new_table("id serial PRIMARY KEY, v text")
      local evil = {
        "x'); DROP TABLE " .. t .. "; --",
        "\"; SELECT 1; --", "$1", "\\'", "%_*", "line\nbreak", "日本語",
      }
      for _, s in ipairs(evil) do
        local res = assert(c:query("INSERT INTO " .. t .. " (v) VALUES ($1)", s))
        assert.equal(1, res.affected)
      end
      local res = assert(c:query("SELECT v FROM " .. t .. " ORDER BY id"))
      for i, s in ipairs(evil) do assert.equal(s, res.rows[i].v) end
      assert.equal(#evil, count(t)) -- the table is still there
      -- a LIKE pattern is data too
      res = assert(c:query("SELECT count(*) AS n FROM " .. t .. " WHERE v = $1", "%_*"))
      assert.equal(1, res.rows[1].n)
    end)

    it("reports a NUL byte as an invalid request, and the connection goes on", function()
      local res, err, info = c:query("SELECT $1::text", "a\0b")
      assert.is_nil(res)
      assert.equal("invalid request", info.code)
      assert.matches("NUL", err)
      res, err, info = c:query("SELECT 1\0")
      assert.is_nil(res)
      assert.matches("NUL", err)
      assert.equal("invalid request", info.code)
      assert.equal(1, c:query("SELECT 1 AS x").rows[1].x)
    end)

    it("raises for parameters of an unsupported type (a bug)", function()
      assert.has_error(function() c:query("SELECT $1", print) end)
      assert.has_error(function() c:query(nil) end)
      assert.equal(1, c:query("SELECT 1 AS x").rows[1].x)
    end)

    it("reports a unique violation with SQLSTATE 23505 and the constraint", function()
      local t = new_table("id int CONSTRAINT " .. "pk_" .. unique() .. " PRIMARY KEY")
      assert(c:query("INSERT INTO " .. t .. " VALUES ($1)", 1))
      local res, err, info = c:query("INSERT INTO " .. t .. " VALUES ($1)", 1)
      assert.is_nil(res)
      assert.equal("23505", info.code)
      assert.matches("^pk_", info.constraint)
      assert.equal(t, info.table)
      assert.equal("ERROR", info.severity)
      assert.matches("duplicate key", err)
      assert.matches("already exists", info.detail)
      assert.equal(1, c:query("SELECT 1 AS x").rows[1].x)
    end)

    it("reports a syntax error with SQLSTATE 42601 and its position", function()
      local res, err, info = c:query("SELEC 1")
      assert.is_nil(res)
      assert.equal("42601", info.code)
      assert.equal(1, info.position)
      assert.matches("syntax error", err)
      res, err, info = c:query("SELECT 1/0")
      assert.is_nil(res)
      assert.matches("division by zero", err)
      assert.equal("22012", info.code)
    end)

    it("reports affected rows of UPDATE and DELETE", function()
      local t = new_table("id int")
      assert(c:query("INSERT INTO " .. t .. " SELECT generate_series(1, 5)"))
      assert.equal(3, assert(c:query("UPDATE " .. t .. " SET id = id WHERE id <= 3")).affected)
      local res = assert(c:query("DELETE FROM " .. t))
      assert.equal(5, res.affected)
      assert.equal("DELETE", res.command)
      assert.same({}, res.rows)
      assert.equal(0, assert(c:query("CREATE TEMP TABLE tmp_x (a int)")).affected)
    end)

    it("runs a script of several statements with exec", function()
      local t = unique()
      tables[#tables + 1] = t
      local r = assert(c:exec("CREATE TABLE " .. t .. " (a int); INSERT INTO " .. t ..
                              " VALUES (1), (2); SELECT sum(a) AS s FROM " .. t))
      assert.equal(3, #r)
      assert.equal(2, r[2].affected)
      assert.equal(3, r[3].rows[1].s)
      local res, err, info = c:exec("INSERT INTO " .. t .. " VALUES (3); SELEC")
      assert.is_nil(res)
      assert.matches("syntax error", err)
      assert.equal("42601", info.code)
      assert.equal(2, count(t)) -- the script is one implicit transaction
    end)

    it("serializes statements of several tasks on one connection", function()
      local out = {}
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = sched.spawn(function()
          local res = assert(c:query("SELECT $1::int AS i, pg_sleep(0.01)", i))
          out[#out + 1] = res.rows[1].i
        end)
      end
      assert(sched.wait_all(tasks))
      assert.same({ 1, 2, 3, 4, 5 }, out)
    end)
  end)

  describe("batch", function()
    local c
    before_each(function() c = connect() end)
    after_each(function() c:close() end)

    it("returns one res per statement", function()
      local t = new_table("id int PRIMARY KEY, v text")
      local r = assert(c:batch({
        { "INSERT INTO " .. t .. " VALUES ($1, $2)", 1, "a" },
        { "INSERT INTO " .. t .. " VALUES ($1, $2)", 2, nil, n = 2 },
        "SELECT id, v FROM " .. t .. " ORDER BY id",
      }))
      assert.equal(3, #r)
      assert.equal(1, r[1].affected)
      assert.same({ { id = 1, v = "a" }, { id = 2 } }, r[3].rows)
      assert.same({}, c:batch({}))
    end)

    it("is atomic: a failing statement rolls the whole batch back", function()
      local t = new_table("id int PRIMARY KEY")
      assert(c:query("INSERT INTO " .. t .. " VALUES (1)"))
      local r, err, info = c:batch({
        { "INSERT INTO " .. t .. " VALUES ($1)", 2 },
        { "INSERT INTO " .. t .. " VALUES ($1)", 1 }, -- duplicate
        { "INSERT INTO " .. t .. " VALUES ($1)", 3 },
      })
      assert.is_nil(r)
      assert.matches("duplicate key", err)
      assert.equal("23505", info.code)
      assert.equal(2, info.index)
      assert.matches("duplicate key", err)
      assert.equal(1, count(t)) -- 2 was rolled back, 3 never ran
      -- the next batch runs normally
      assert(c:batch({ { "INSERT INTO " .. t .. " VALUES ($1)", 2 } }))
      assert.equal(2, count(t))
    end)

    it("pipelines 1000 inserts in one round trip", function()
      local t = new_table("id int PRIMARY KEY, v text")
      local stmts = {}
      for i = 1, 1000 do
        stmts[i] = { "INSERT INTO " .. t .. " VALUES ($1, $2)", i, "v" .. i }
      end
      local t0 = sched.now()
      local r = assert(c:batch(stmts))
      local took = sched.now() - t0
      assert.equal(1000, #r)
      assert.equal(1000, count(t))
      assert.equal("v777", scalar("SELECT v FROM " .. t .. " WHERE id = 777"))
      assert.is_true(took < 5000, "took " .. took)
    end)
  end)

  describe("LISTEN/NOTIFY", function()
    local a, b
    before_each(function() a, b = connect(), connect() end)
    after_each(function() a:close(); b:close() end)

    it("delivers notifications to a waiting task", function()
      local ch = unique("ch")
      assert(a:listen(ch))
      local got
      local waiter = sched.spawn(function() got = { a:wait_notification(5000) } end)
      sched.sleep(20)
      assert(b:notify(ch, "hello"))
      assert(waiter:join())
      assert.same({ { channel = ch, payload = "hello", pid = b:pid() } }, got)
    end)

    it("queues notifications that arrive while nobody waits, in order", function()
      local ch = unique("ch")
      assert(a:listen(ch))
      for i = 1, 3 do assert(b:notify(ch, "m" .. i)) end
      sched.sleep(50) -- they arrive while a is idle
      for i = 1, 3 do
        local n = assert(a:wait_notification(2000))
        assert.equal("m" .. i, n.payload)
      end
      assert.same({ nil, "timeout" }, { a:wait_notification(30) })
      assert.same({ nil, "timeout" }, { a:wait_notification(0) })
    end)

    it("times out, can be cancelled, and allows one waiter", function()
      local ch = unique("ch")
      assert(a:listen(ch))
      local t0 = sched.now()
      assert.same({ nil, "timeout" }, { a:wait_notification(50) })
      assert.is_true(sched.now() - t0 >= 45)
      local seen
      local w = sched.spawn(function() seen = { a:wait_notification() } end)
      sched.sleep(10)
      assert.same({ nil, "busy" }, { a:wait_notification(10) })
      w:cancel()
      assert.same({ nil, "cancelled" }, { w:join() })
      assert.same({ nil, "cancelled" }, seen)
      -- after UNLISTEN nothing more comes
      assert(a:unlisten(ch))
      assert(b:notify(ch, "late"))
      assert.same({ nil, "timeout" }, { a:wait_notification(50) })
    end)

    it("keeps at most 10000 unread notifications, dropping the oldest", function()
      local ch = unique("ch")
      assert(a:listen(ch))
      local stmts = {}
      for i = 1, 10005 do stmts[i] = { "SELECT pg_notify($1, $2)", ch, "n" .. i } end
      assert(b:batch(stmts)) -- one transaction: delivered together at commit
      sched.sleep(100)
      local first, last, got = nil, nil, 0
      assert.is_true(wait_until(function()
        for n in function() return a:wait_notification(0) end do
          first, last, got = first or n.payload, n.payload, got + 1
        end
        return last == "n10005"
      end, 5000))
      assert.equal("n6", first)
      assert.equal(10000, got)
    end)

    it("ends a wait with closed when the server drops the connection", function()
      assert(a:listen(unique("ch")))
      local seen
      local w = sched.spawn(function() seen = { a:wait_notification(5000) } end)
      sched.sleep(10)
      assert.is_true(scalar("SELECT pg_terminate_backend($1)", a:pid()))
      assert(w:join())
      assert.same({ nil, "closed" }, seen)
    end)

    it("ends a wait with closed when the connection closes", function()
      assert(a:listen(unique("ch")))
      local seen
      local w = sched.spawn(function() seen = { a:wait_notification(5000) } end)
      sched.sleep(10)
      a:close()
      assert(w:join())
      assert.same({ nil, "closed" }, seen)
      assert.same({ nil, "closed" }, { a:wait_notification(10) })
    end)
  end)

  describe("cancellation", function()
    it("cancels a running query when its task is cancelled", function()
      local c = connect()
      local pid = c:pid()
      local seen
      local t = sched.spawn(function() seen = { c:query("SELECT pg_sleep(10)") } end)
      sched.sleep(50)
      assert.is_true(sleeping(pid))
      local t0 = sched.now()
      t:cancel()
      assert.same({ nil, "cancelled" }, { t:join() })
      assert.is_nil(seen[1])
      assert.equal("cancelled", seen[2])
      assert.equal("cancelled", seen[3].code)
      -- the connection is usable at once; the query ended on the server
      assert.equal(1, assert(c:query("SELECT 1 AS x")).rows[1].x)
      assert.is_true(sched.now() - t0 < 1000, "took " .. (sched.now() - t0))
      assert.is_false(sleeping(pid))
      assert.equal("ready", c:status())
      c:close()
    end)

    it("delivers timeout at a task's deadline and keeps the connection", function()
      local c = connect()
      local seen
      local t0 = sched.now()
      local t = sched.spawn_with({ timeout_ms = 100 }, function()
        seen = { c:query("SELECT pg_sleep(10)") }
      end)
      assert.same({ nil, "timeout" }, { t:join() })
      assert.is_nil(seen[1])
      assert.equal("timeout", seen[2])
      assert.equal("timeout", seen[3].code)
      local took = sched.now() - t0
      assert.is_true(took >= 95 and took < 1000, "took " .. took)
      assert.equal(2, assert(c:query("SELECT 2 AS x")).rows[1].x)
      assert.is_false(sleeping(c:pid()))
      c:close()
    end)

    it("cancels a batch in flight: nothing of it is committed", function()
      local c = connect()
      local t = new_table("id int")
      local task = sched.spawn(function()
        return c:batch({
          { "INSERT INTO " .. t .. " VALUES (1)" },
          "SELECT pg_sleep(10)",
          { "INSERT INTO " .. t .. " VALUES (2)" },
        })
      end)
      sched.sleep(50)
      task:cancel()
      assert.same({ nil, "cancelled" }, { task:join() })
      assert.equal(0, count(t))
      assert(c:query("SELECT 1"))
      c:close()
    end)

    it("returns closed to a task whose connection is closed under it", function()
      local c = connect()
      local seen
      local t = sched.spawn(function() seen = { c:query("SELECT pg_sleep(10)") } end)
      sched.sleep(30)
      local pid = c:pid()
      c:close()
      assert(t:join())
      assert.is_nil(seen[1])
      assert.equal("closed", seen[3].code)
      assert.equal("closed", c:status())
      local res, _, info = c:query("SELECT 1")
      assert.is_nil(res)
      assert.equal("closed", info.code)
      assert.is_true(wait_until(function() return not sleeping(pid) end, 2000))
    end)

    it("a cancelled connect gives cancelled", function()
      local t = sched.spawn(function() return pg.connect(URL) end)
      t:cancel()
      assert.same({ nil, "cancelled" }, { t:join() })
    end)
  end)

  describe("connect failures", function()
    it("reports a refused connection", function()
      local c, err, info = pg.connect(REFUSED)
      assert.is_nil(c)
      assert.equal("connection refused", info.code)
      assert.matches("refused", err)
    end)

    it("times out against a server that never answers", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) == 0)
      local js = "const s=require('net').createServer(()=>{});" ..
        "s.listen(0,'127.0.0.1',()=>require('fs').writeFileSync(process.argv[1]," ..
        "s.address().port+' '+process.pid));setTimeout(()=>process.exit(0),30000)"
      local ok = os.execute(("node -e %q %s/info >/dev/null 2>&1 </dev/null &"):format(js, dir))
      if ok ~= 0 and ok ~= true then pending("no node to play a silent server") return end
      local info
      assert.is_true(wait_until(function()
        local f = io.open(dir .. "/info")
        info = f and f:read("*l")
        if f then f:close() end
        return info and info:match("^%d+ %d+$")
      end, 10000), "the silent server did not start")
      local port, pid = info:match("^(%d+) (%d+)$")
      local t0 = sched.now()
      local c, err, i = pg.connect(("postgresql://x@127.0.0.1:%s/x"):format(port),
                                   { connect_timeout_ms = 100 })
      local took = sched.now() - t0
      os.execute("kill " .. pid .. "; rm -rf " .. dir)
      assert.is_nil(c)
      assert.equal("timeout", i.code)
      assert.matches("100 ms", err)
      assert.is_true(took >= 95 and took < 1000, "took " .. took)
    end)

    it("reports a malformed URL", function()
      local c, err, info = pg.connect("postgresql://[bad")
      assert.is_nil(c)
      assert.equal("connect failed", info.code)
      assert.is_string(err)
    end)
  end)

  describe("pool", function()
    it("runs more tasks than connections, at most size at once", function()
      local pool = pg.pool(URL, { size = 3 })
      local pids, tasks = {}, {}
      local t0 = sched.now()
      for i = 1, 12 do
        tasks[i] = sched.spawn(function()
          local res = assert(pool:query("SELECT pg_backend_pid() AS pid, pg_sleep(0.05)"))
          pids[res.rows[1].pid] = true
          return i
        end)
      end
      assert(sched.wait_all(tasks))
      local took = sched.now() - t0
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      assert.is_true(n <= 3 and n >= 1)
      local st = pool:stats()
      assert.equal(3, st.open)
      assert.equal(3, st.idle)
      assert.equal(0, st.waiting)
      assert.is_true(took >= 190, "took " .. took) -- 4 rounds of 50 ms
      pool:close()
      assert.equal(0, pool:stats().open)
    end)

    it("batch and exec go through the pool", function()
      local pool = pg.pool(URL, { size = 1 })
      local t = new_table("id int")
      assert(pool:batch({ { "INSERT INTO " .. t .. " VALUES ($1)", 1 }, { "INSERT INTO " .. t .. " VALUES ($1)", 2 } }))
      local r = assert(pool:exec("SELECT 1 AS a; SELECT 2 AS b"))
      assert.equal(2, r[2].rows[1].b)
      assert.equal(2, count(t))
      pool:close()
      local res, err, info = pool:query("SELECT 1")
      assert.is_nil(res)
      assert.is_string(err)
      assert.equal("closed", info.code)
    end)

    it("a task waiting for a connection can be cancelled", function()
      local pool = pg.pool(URL, { size = 1 })
      local holding = false
      local holder = sched.spawn(function()
        return pool:with(function(c)
          holding = true
          sched.sleep(150)
          return c:query("SELECT 'held' AS v").rows[1].v
        end)
      end)
      assert.is_true(wait_until(function() return holding end, 5000))
      local seen
      local waiter = sched.spawn(function() seen = { pool:query("SELECT 1") } end)
      sched.sleep(20)
      assert.equal(1, pool:stats().waiting)
      waiter:cancel()
      waiter:join()
      assert.is_nil(seen[1])
      assert.equal("cancelled", seen[2])
      assert.equal(0, pool:stats().waiting)
      assert.same({ true, "held" }, { holder:join() })
      assert.equal(1, assert(pool:query("SELECT 1 AS x")).rows[1].x)
      pool:close()
    end)

    it("close() ends the waits; a busy connection closes when returned", function()
      local pool = pg.pool(URL, { size = 1 })
      local holding = false
      local holder = sched.spawn(function()
        return pool:with(function(c)
          holding = true
          sched.sleep(80)
          return c:query("SELECT 'still works' AS v").rows[1].v
        end)
      end)
      assert.is_true(wait_until(function() return holding end, 5000))
      local seen
      local waiter = sched.spawn(function() seen = { pool:query("SELECT 1") } end)
      sched.sleep(10)
      assert.equal(1, pool:stats().waiting)
      pool:close()
      assert(waiter:join())
      assert.is_nil(seen[1])
      assert.equal("closed", seen[3].code)
      assert.same({ true, "still works" }, { holder:join() })
      assert.equal(0, pool:stats().open)
    end)

    it("cancels a pooled query and reuses the connection", function()
      local pool = pg.pool(URL, { size = 1 })
      local pid = assert(pool:query("SELECT pg_backend_pid() AS p")).rows[1].p
      local seen
      local t = sched.spawn(function() seen = { pool:query("SELECT pg_sleep(10)") } end)
      sched.sleep(50)
      local t0 = sched.now()
      t:cancel()
      t:join()
      assert.equal("cancelled", seen[2])
      local res = assert(pool:query("SELECT pg_backend_pid() AS p"))
      assert.equal(pid, res.rows[1].p) -- the same connection
      assert.is_true(sched.now() - t0 < 1000)
      assert.is_false(sleeping(pid))
      pool:close()
    end)

    it("with() gives the same connection and returns it after an error", function()
      local pool = pg.pool(URL, { size = 1 })
      local p1, p2 = pool:with(function(c)
        return c:query("SELECT pg_backend_pid() AS p").rows[1].p,
               c:query("SELECT pg_backend_pid() AS p").rows[1].p
      end)
      assert.equal(p1, p2)
      assert.has_error(function()
        pool:with(function(c)
          assert(c:query("BEGIN"))
          error("boom")
        end)
      end, "boom")
      -- the transaction left open was rolled back; the connection is back
      assert.equal("idle", pool:with(function(c) return c:transaction_status() end))
      assert.equal(1, pool:stats().idle)
      pool:close()
    end)

    it("transaction() commits, or rolls back on false, nil+err and raise", function()
      local pool = pg.pool(URL, { size = 2 })
      local t = new_table("id int PRIMARY KEY")
      local ins = "INSERT INTO " .. t .. " VALUES ($1)"
      assert.same({ "done", 2 }, { pool:transaction(function(c)
        assert(c:query(ins, 1))
        assert(c:query(ins, 2))
        return "done", 2
      end) })
      assert.equal(2, count(t))
      assert.is_true(pool:transaction(function(c) assert(c:query(ins, 3)) end))
      assert.equal(3, count(t))

      local r, err, info = pool:transaction(function(c)
        assert(c:query(ins, 10))
        return false
      end)
      assert.is_nil(r)
      assert.is_string(err)
      assert.equal("rolled back", info.code)
      r, err, info = pool:transaction(function(c)
        assert(c:query(ins, 11))
        return c:query(ins, 1) -- duplicate: nil, err, info
      end)
      assert.is_nil(r)
      assert.matches("duplicate key", err)
      assert.equal("23505", info.code)
      assert.has_error(function()
        pool:transaction(function(c)
          assert(c:query(ins, 12))
          error("raised")
        end)
      end, "raised")
      -- a failed statement the function ignored: COMMIT rolls back
      r, err, info = pool:transaction(function(c)
        assert(c:query(ins, 13))
        c:query(ins, 1)
        return true
      end)
      assert.is_nil(r)
      assert.is_string(err)
      assert.equal("rolled back", info.code)
      assert.equal(3, count(t))
      assert.equal(0, scalar("SELECT count(*) FROM " .. t .. " WHERE id >= 10"))
      pool:close()
    end)

    it("a query in a cancelled transaction closes that connection", function()
      local pool = pg.pool(URL, { size = 1 })
      local t = new_table("id int")
      local task = sched.spawn(function()
        return pool:transaction(function(c)
          assert(c:query("INSERT INTO " .. t .. " VALUES (1)"))
          return c:query("SELECT pg_sleep(10)")
        end)
      end)
      sched.sleep(50)
      task:cancel()
      assert.same({ nil, "cancelled" }, { task:join() })
      assert.equal(0, count(t))
      assert.equal(0, pool:stats().open) -- closed, not reused
      assert.equal(1, assert(pool:query("SELECT 1 AS x")).rows[1].x)
      pool:close()
    end)

    it("reports refused connections and backs off between attempts", function()
      local pool = pg.pool(REFUSED, { size = 2, backoff_min_ms = 80, backoff_max_ms = 200 })
      local res, err, info = pool:query("SELECT 1")
      assert.is_nil(res)
      assert.matches("connection refused", err)
      assert.equal("connection refused", info.code)
      local t0 = sched.now()
      res, err, info = pool:query("SELECT 1")
      assert.is_nil(res)
      assert.matches("connection refused", err)
      assert.equal("connection refused", info.code)
      local waited = sched.now() - t0
      assert.is_true(waited >= 75, "waited " .. waited)
      t0 = sched.now()
      pool:query("SELECT 1") -- doubled: 160 ms
      waited = sched.now() - t0
      assert.is_true(waited >= 150, "waited " .. waited)
      assert.equal(3, pool:stats().failures)
      assert.equal(0, pool:stats().open)
      -- the backoff wait honours the deadline
      local t = sched.spawn_with({ timeout_ms = 30 }, function() return pool:query("SELECT 1") end)
      assert.same({ nil, "timeout" }, { t:join() })
      pool:close()
    end)
  end)

  describe("lost connections", function()
    it("a connection dropped mid-transaction gives closed; commits stay", function()
      local pool = pg.pool(URL, { size = 1 })
      local t = new_table("id int")
      assert(pool:query("INSERT INTO " .. t .. " VALUES (1)")) -- committed
      local r, err, info = pool:transaction(function(c)
        assert(c:query("INSERT INTO " .. t .. " VALUES (2)"))
        assert.is_true(scalar("SELECT pg_terminate_backend($1)", c:pid()))
        return c:query("INSERT INTO " .. t .. " VALUES (3)")
      end)
      assert.is_nil(r)
      assert.equal("closed", info.code)
      assert.matches("^closed", err)
      assert.equal(1, count(t)) -- 1 kept, 2 and 3 gone with the session
      assert.equal(0, pool:stats().open) -- dropped
      assert(pool:query("INSERT INTO " .. t .. " VALUES (4)"))
      assert.equal(2, count(t))
      pool:close()
    end)

    it("an idle connection killed by the server reports closed", function()
      local c = connect()
      assert.is_true(scalar("SELECT pg_terminate_backend($1)", c:pid()))
      assert.is_true(wait_until(function() return c:status() == "closed" end, 2000))
      local res, err, info = c:query("SELECT 1")
      assert.is_nil(res)
      assert.is_string(err)
      assert.equal("closed", info.code)
      c:close()
    end)

    it("a collected connection is closed", function()
      local c = connect()
      local pid = c:pid()
      c = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_true(wait_until(function()
        return scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
      end, 2000))
    end)

    it("the pool reconnects after a server restart; nothing committed is lost", function()
      if not (PG_DIR and PG_BIN) then
        pending("CHORUS_TEST_PG_DIR / CHORUS_TEST_PG_BIN not set")
        return
      end
      local pool = pg.pool(URL, { size = 2 })
      local plain = connect()
      local t = new_table("id int")
      assert(pool:batch({ { "INSERT INTO " .. t .. " VALUES (1)" }, { "INSERT INTO " .. t .. " VALUES (2)" } }))
      -- two connections open in the pool
      local a = sched.spawn(function() return pool:query("SELECT pg_sleep(0.02)") end)
      local b = sched.spawn(function() return pool:query("SELECT pg_sleep(0.02)") end)
      assert(sched.wait_all({ a, b }))
      assert.equal(2, pool:stats().idle)
      admin:close()

      local as_pg = ""
      local id = io.popen("id -u"):read("*l")
      if id == "0" then as_pg = "runuser -u postgres -- " end
      local cmd = ("%s%s/pg_ctl -D %s -m fast -w -t 60 -l %s/restart.log restart >/dev/null 2>&1")
        :format(as_pg, PG_BIN, PG_DIR, PG_DIR)
      local rc = os.execute(cmd)
      assert.is_true(rc == 0 or rc == true, "pg_ctl restart failed: " .. tostring(rc))

      -- the pool finds its connections dead and opens new ones
      local res, err = pool:query("SELECT count(*) AS n FROM " .. t)
      assert.is_truthy(res, err)
      assert.equal(2, res.rows[1].n)
      -- a plain connection reports the loss
      local r2, err2, info = plain:query("SELECT 1")
      assert.is_nil(r2)
      assert.is_string(err2)
      assert.equal("closed", info.code)
      plain:close()
      admin = connect()
      assert(pool:query("INSERT INTO " .. t .. " VALUES (3)"))
      assert.equal(3, count(t))
      pool:close()
    end)
  end)

  it("leaves no connection open", function()
    collectgarbage()
    collectgarbage()
    assert.is_true(wait_until(function() return others() == 0 end, 2000),
                   "sessions left: " .. tostring(others()))
  end)
end)
