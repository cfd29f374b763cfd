-- The PostgreSQL store: the store contract, migrations, group commit,
-- constraint errors, fencing, and a server restart in the middle of a run.
-- #postgres
local h = require "spec.helpers"
local pg = require "chorus.db.pg"
local pgstore = require "chorus.store.pg"
local migrate = require "chorus.db.migrate"
local sched = require "chorus.sched"
local node_mod = require "chorus.run.node"

local function open(url)
  local pool = pg.pool(url, { size = 4 })
  local store = pgstore.new({ pool = pool })
  local engine = h.engine({ store = store })
  local node = node_mod.new({ engine = engine, pool = pool, claim = false })
  return store, engine, node, pool
end

describe("pg store #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end

  describe("contract", function()
    local url = h.fresh_db("contract")
    -- Each case gets an empty schema; executions go through a node, as in
    -- the server.
    require("spec.shared.store_contract")(function()
      local store, engine, node, pool = open(url)
      assert(pool:query([[TRUNCATE orchestration_callbacks, orchestration_step_runs, orchestration_executions,
        orchestration_config_versions, orchestration_configs, chorus_api_keys CASCADE]]))
      engine.execute = function(_, cfg, input, opts)
        local r, exec = node:submit(cfg, input, opts)
        assert(r, exec)
        return exec
      end
      return store, engine
    end)
  end)

  it("migrations go up, down and up again; up twice changes nothing", function()
    local url = h.fresh_db("migrations")
    local pool = pg.pool(url, { size = 1 })
    assert.same({}, assert(migrate.up(pool)))
    local st = assert(migrate.status(pool))
    for _, m in ipairs(st) do assert.is_number(m.applied_at) end
    local all = #st
    assert.equal(all, #assert(migrate.down(pool, all)))
    local r = assert(pool:query("SELECT to_regclass('orchestration_executions') IS NULL AS gone"))
    assert.is_true(r.rows[1].gone)
    assert.equal(all, #assert(migrate.up(pool)))
    assert.is_false(assert(pool:query("SELECT to_regclass('orchestration_executions') IS NULL AS gone")).rows[1].gone)
    pool:close()
  end)

  it("down refuses a migration without its .down.sql, naming it, and undoes nothing", function()
    local url = h.fresh_db("migrations_nodown")
    local pool = pg.pool(url, { size = 1 })
    local dir = h.tmpdir()
    h.write(dir .. "/900_marker.up.sql", "CREATE TABLE spec_marker (x int);")
    assert.same({ 900 }, assert(migrate.up(pool, dir)))
    local res, err = migrate.down(pool, 1, dir)
    assert.is_nil(res)
    assert.equal("migration 900 has no .down.sql", err)
    assert.is_false(assert(pool:query("SELECT to_regclass('spec_marker') IS NULL AS gone")).rows[1].gone)
    pool:close()
  end)

  it("two nodes migrating at once apply each migration once", function()
    local base = h.pg_url()
    local admin = assert(pg.connect(base))
    local name = "race_" .. require("chorus.native").random_hex(4)
    assert(admin:query("CREATE DATABASE " .. pg.quote_ident(name)))
    admin:close()
    local url = base:gsub("/[^/]*$", "/" .. name)
    local code_a, code_b
    local a = sched.spawn(function() code_a = h.sh(h.binary .. " migrate --db " .. url) end)
    local b = sched.spawn(function() code_b = h.sh(h.binary .. " migrate --db " .. url) end)
    sched.wait_all({ a, b })
    assert.equal(0, code_a)
    assert.equal(0, code_b)
    local pool = pg.pool(url, { size = 1 })
    local r = assert(pool:query("SELECT count(*) AS n FROM schema_migrations"))
    assert.equal(#assert(migrate.list()), r.rows[1].n)
    pool:close()
  end)

  it("maps constraint violations to clear errors", function()
    local url = h.fresh_db("constraints")
    local store, engine = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    assert(store:create_config(cfg, { tenant_id = "t" }))
    local c, err, code = store:create_config(cfg, { tenant_id = "t" })
    assert.is_nil(c)
    assert.equal("conflict", code)
    assert.equal("a config named 'spec' already exists", err)
    -- CHECK constraints hold: the SQLSTATE comes back with the constraint.
    local ok, _, info = store.pool:query("UPDATE orchestration_configs SET version = 0")
    assert.is_nil(ok)
    assert.equal("23514", info.code)
    assert.equal("orchestration_configs_version_check", info.constraint)
  end)

  it("group commit: concurrent executions share transactions, every write durable", function()
    local url = h.fresh_db("group")
    local store, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("parallel", {
      { id = "a", agent = "delay", params = { ms = 5 } }, { id = "b", agent = "delay", params = { ms = 5 } },
      { id = "c", agent = "echo", dependencies = { "a", "b" } } })))
    local execs, tasks = {}, {}
    for i = 1, 200 do
      tasks[i] = sched.spawn(function()
        local _, exec = node:submit(cfg, { i = i }, {})
        execs[i] = exec
        exec:wait()
      end)
    end
    sched.wait_all(tasks)
    local st = store.committer.stats
    assert.is_true(st.batches < st.records / 2, ("%d batches for %d records"):format(st.batches, st.records))
    assert.is_true(st.max_batch >= 50, "largest batch " .. st.max_batch)
    local r = assert(pool:query([[SELECT count(*) AS n FROM orchestration_executions WHERE status = 'completed']]))
    assert.equal(200, r.rows[1].n)
    r = assert(pool:query([[SELECT count(*) AS n FROM orchestration_step_runs WHERE status = 'completed']]))
    assert.equal(600, r.rows[1].n)
    local rec = assert(store:get_record(execs[7].trace_id))
    assert.equal(7, rec.input.i)
    assert.equal("completed", rec.steps[3].status)
  end)

  it("a node whose claim was taken over is fenced: its writes are refused and it stops", function()
    local url = h.fresh_db("fencing")
    local store, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "delay", params = { ms = 400 } }, { id = "b", agent = "echo" } })))
    local _, exec = node:submit(cfg, {}, {})
    assert.is_true(h.wait_until(function() return exec:run_of("a").status == "running" end, 2000))
    -- Another node claims it (as if our lease had expired).
    assert(pool:query("UPDATE orchestration_executions SET claims = claims + 1, seq = 2 * 1e9 WHERE id = $1", exec.id))
    exec:wait()
    assert.is_true(exec.fenced)
    local rec = assert(store:get_record(exec.id))
    assert.equal("running", rec.status) -- untouched by the fenced node
    assert.is_nil(rec.steps[1].finished_at)
  end)

  it("a resumed execution that fails compensates the steps completed before the takeover", function()
    local url = h.fresh_db("resume_compensate")
    local _, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "echo", params = { output = "booked" }, compensate = "echo" },
      { id = "b", agent = "delay", params = { ms = 400 } },
      { id = "c", agent = "fail", params = { message = "no seat" } } })))
    local _, exec = node:submit(cfg, {}, {})
    assert.is_true(h.wait_until(function() return exec:run_of("b").status == "running" end, 2000))
    -- This node loses the execution (fenced) and its lease lapses: another
    -- node resumes it with step a replayed from the database.
    assert(pool:query("UPDATE orchestration_executions SET claims = claims + 1, seq = 2 * 1e9 WHERE id = $1", exec.id))
    exec:wait()
    assert.is_true(exec.fenced)
    assert(pool:query("UPDATE orchestration_executions SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      exec.id))
    local store2, _, node2 = open(url)
    assert.equal(1, node2:claim_once())
    local rec
    assert.is_true(h.wait_until(function()
      rec = store2:get_record(exec.id)
      return rec and rec.status == "failed"
    end, 5000))
    assert.matches("no seat", rec.error)
    assert.equal(1, rec.steps[1].attempts) -- a was not run again
    assert.equal("completed", rec.steps[1].compensation.status)
    assert.is_nil(rec.steps[2].compensation) -- b has no compensate
  end)

  it("a paused execution taken over by another node is paused again there, with its new paused_at", function()
    local url = h.fresh_db("resume_paused")
    local store, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "echo" }, { id = "gate", agent = "echo", approval = true, dependencies = { "a" } } })))
    local _, exec = node:submit(cfg, {}, {})
    local rec
    assert.is_true(h.wait_until(function()
      rec = store:get_record(exec.id)
      return rec and rec.status == "paused"
    end, 5000))
    local since = assert(rec.paused_at)
    -- This node loses it while it waits for approval; its lease lapses.
    assert(pool:query("UPDATE orchestration_executions SET claims = claims + 1, seq = 2 * 1e9 WHERE id = $1", exec.id))
    exec:cancel()
    exec:wait()
    assert.is_true(exec.fenced)
    assert(pool:query("UPDATE orchestration_executions SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      exec.id))
    local store2, _, node2 = open(url)
    assert.equal(1, node2:claim_once())
    local live
    assert.is_true(h.wait_until(function()
      live = store2:get_execution(exec.id)
      return live and live.pending_approvals == 1
    end, 5000))
    -- The new node runs it again (running, step a replayed) and pauses at
    -- the gate anew: the pause it reports is its own.
    assert.equal("paused", live.status)
    assert.is_true(live.paused_at > since)
    assert.is_true(h.wait_until(function()
      rec = store2:get_record(exec.id)
      return rec.paused_at ~= nil and rec.paused_at > since
    end, 5000))
    assert(node2:control(exec.id, "approve", { step_id = "gate", by = "u" }))
    assert.is_true(h.wait_until(function()
      rec = store2:get_record(exec.id)
      return rec and rec.status == "completed"
    end, 5000))
    assert.is_nil(rec.paused_at)
  end)

  it("an idempotency key given twice in a tenant starts one execution", function()
    local url = h.fresh_db("idem")
    local _, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    local r1, e1 = node:submit(cfg, {}, { idempotency_key = "k1", tenant_id = "t" })
    assert(r1, e1)
    local r2 = assert(node:submit(cfg, {}, { idempotency_key = "k1", tenant_id = "t" }))
    assert.is_true(r2.replayed)
    assert.equal(r1.trace_id, r2.trace_id)
    local r3 = assert(node:submit(cfg, {}, { idempotency_key = "k1", tenant_id = "other" }))
    assert.is_nil(r3.replayed)
    assert.are_not.equal(r1.trace_id, r3.trace_id)
    if e1 then e1:wait() end
    local n = assert(pool:query("SELECT count(*) AS n FROM orchestration_executions"))
    assert.equal(2, n.rows[1].n)
  end)

  it("writes a webhook outbox row in the same transaction as the terminal status", function()
    local url = h.fresh_db("outbox")
    local _, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo", params = { output = 5 } } },
      { callback_url = "http://127.0.0.1:9/hook" })))
    local _, exec = node:submit(cfg, {}, {})
    exec:wait()
    local r = assert(pool:query("SELECT url, payload, status FROM orchestration_callbacks WHERE execution_id = $1", exec.id))
    assert.equal(1, #r.rows)
    assert.equal("http://127.0.0.1:9/hook", r.rows[1].url)
    assert.equal("execution.completed", r.rows[1].payload.event)
    assert.equal(5, r.rows[1].payload.output)
  end)

  it("PostgreSQL restarting during a run: writes wait, reconnect, nothing is lost", function()
    local dir, bin = os.getenv("CHORUS_TEST_PG_DIR"), os.getenv("CHORUS_TEST_PG_BIN")
    if not dir or not bin then pending("CHORUS_TEST_PG_DIR/BIN not set") return end
    local url = h.fresh_db("restart")
    local _, engine, node, pool = open(url)
    local cfg = assert(engine:validate(h.flat("sequential", {
      { id = "a", agent = "delay", params = { ms = 50 } }, { id = "b", agent = "delay", params = { ms = 400 } },
      { id = "c", agent = "echo", params = { output = "done" } } })))
    local execs = {}
    for i = 1, 20 do
      local _, exec = node:submit(cfg, { i = i }, {})
      execs[i] = exec
    end
    sched.sleep(150) -- every execution is inside step b now
    local as = (io.popen("id -u"):read("*l") == "0") and "runuser -u postgres -- " or ""
    assert.equal(0, os.execute(("%s%s/pg_ctl -D %s -m fast -w -l %s/restart.log restart >/dev/null 2>&1")
      :format(as, bin, dir, dir)))
    for _, e in ipairs(execs) do e:wait() end
    for _, e in ipairs(execs) do assert.equal("completed", e.status) end
    local r = assert(pool:query([[SELECT count(*) AS n FROM orchestration_step_runs WHERE status = 'completed']]))
    assert.equal(60, r.rows[1].n)
    r = assert(pool:query([[SELECT count(*) AS n FROM orchestration_executions WHERE status = 'completed' AND output = '"done"']]))
    assert.equal(20, r.rows[1].n)
  end)
end)
