-- The CLI for a running system straight against PostgreSQL (--db,
-- DATABASE_URL): executions listed, shown and controlled through the
-- durable path the nodes use (a pending execution nobody runs is
-- cancelled in place; others are flagged and sent to their node with
-- NOTIFY). Then roles, through a server with keys from the database.
-- #postgres
local h = require "spec.helpers"
local srv = require "spec.support.serve"
local json = require "chorus.json"

local _ -- what a test does not look at

local function esc(s) return (s:gsub("%p", "%%%0")) end

describe("chorus CLI with --db #postgres", function()
  if not h.pg_url() then
    pending("CHORUS_TEST_PG is not set")
    return
  end
  local url, dir, node
  local GATED = { name = "db-gated", strategy = "sequential", steps = {
    { id = "prep", agent = "echo" },
    { id = "gate", agent = "echo", approval = true, dependencies = { "prep" }, params = { output = { ok = 1 } } } } }
  local SLOW = { name = "db-slow", strategy = "sequential", steps = {
    { id = "a", agent = "delay", params = { ms = 800 } }, { id = "b", agent = "echo", dependencies = { "a" } } } }

  local function chorus(args, env)
    return srv.chorus(args, env or {})
  end

  local function enqueue(doc)
    local path = dir .. "/" .. doc.name .. ".json"
    h.write(path, json.encode(doc))
    local code, out, err = chorus(("enqueue %s --db %s"):format(path, url))
    assert.equal(0, code, err)
    return out:match("^([%x%-]+)\n$")
  end

  local function status(trace)
    local code, out, err = chorus(("executions show %s --json --db %s"):format(trace, url))
    assert.equal(0, code, err)
    return json.decode(out).status
  end

  local function wait_status(trace, want)
    local last
    assert.is_true(h.wait_until(function()
      last = status(trace)
      return last == want
    end, 15000), ("%s is %s, not %s"):format(trace, tostring(last), want))
  end

  setup(function()
    url = h.fresh_db("cli")
    dir = h.tmpdir()
  end)
  teardown(function() if node then srv.stop(node) end end)

  it("lists, shows and cancels a pending execution nobody runs yet (it ends at once)", function()
    local t = enqueue(SLOW)
    local code, out, err = chorus("executions list --db " .. url)
    assert.equal(0, code, err)
    assert.matches(esc(t) .. "  db%-slow%s+pending", out)
    code, out = chorus("executions show " .. t .. " --db " .. url)
    assert.equal(0, code)
    assert.matches("^db%-slow pending", out)
    code, out, err = chorus("executions cancel " .. t .. " --db " .. url)
    assert.equal(0, code, err)
    assert.equal(("cancel of execution %s requested; its status is now cancelled\n"):format(t), out)
    assert.equal("cancelled", status(t))
    code, _, err = chorus("executions cancel " .. t .. " --db " .. url)
    assert.equal(1, code)
    assert.equal("chorus executions cancel: cannot cancel an execution that is cancelled\n", err)
  end)

  it("reads DATABASE_URL when neither --server nor --db is given, and --json", function()
    local t = enqueue(SLOW)
    local code, out, err = chorus("executions list --json --status pending", { DATABASE_URL = url })
    assert.equal(0, code, err)
    local page = json.decode(out)
    local found = false
    for _, e in ipairs(page.items) do found = found or e.trace_id == t end
    assert.is_true(found)
    assert.equal(50, page.limit)
    chorus("executions cancel " .. t, { DATABASE_URL = url })
  end)

  describe("with a node running the executions", function()
    setup(function()
      node = srv.start("--db " .. url, { CHORUS_ADMIN_KEY = false })
    end)

    it("approves and rejects steps through the database", function()
      local t = enqueue(GATED)
      wait_status(t, "paused")
      local code, out = chorus("executions show " .. t .. " --db " .. url)
      assert.equal(0, code)
      assert.matches("step gate awaits approval", out, 1, true)
      local err
      code, out, err = chorus(("executions approve %s gate --db %s"):format(t, url))
      assert.equal(0, code, err)
      assert.matches("^approval of step gate of execution " .. esc(t), out)
      wait_status(t, "completed")
      local t2 = enqueue(GATED)
      wait_status(t2, "paused")
      code, _, err = chorus(("executions reject %s gate --reason 'wrong window' --db %s"):format(t2, url))
      assert.equal(0, code, err)
      wait_status(t2, "failed")
      local _, js = chorus(("executions show %s --json --db %s"):format(t2, url))
      assert.matches("wrong window", js, 1, true)
      code, _, err = chorus(("executions approve %s gate --db %s"):format(t2, url))
      assert.equal(1, code)
      assert.matches("step gate is not awaiting approval", err, 1, true)
    end)

    it("pauses, resumes and cancels an execution another process runs", function()
      local t = enqueue(SLOW)
      wait_status(t, "running")
      local code, _, err = chorus(("executions pause %s --db %s"):format(t, url))
      assert.equal(0, code, err)
      wait_status(t, "paused")
      code, _, err = chorus(("executions resume %s --db %s"):format(t, url))
      assert.equal(0, code, err)
      wait_status(t, "completed")
      local t2 = enqueue(SLOW)
      wait_status(t2, "running")
      code, _, err = chorus(("executions cancel %s --db %s"):format(t2, url))
      assert.equal(0, code, err)
      wait_status(t2, "cancelled")
    end)

    it("checks roles through the server: a viewer reads but cannot control, reload or follow everything", function()
      local function key(role)
        local code, out, err = chorus(("keys create --tenant default --user %s --role %s --db %s"):format(role, role, url))
        assert.equal(0, code, err)
        return out:match("(chk_%x+)%s*$")
      end
      local viewer, admin = key("viewer"), key("admin")
      local venv = { CHORUS_SERVER = node.base, CHORUS_API_KEY = viewer }
      local t = enqueue(SLOW)
      local code, _, err = chorus("executions list", venv)
      assert.equal(0, code, err)
      code, _, err = chorus("executions cancel " .. t, venv)
      assert.equal(1, code)
      assert.equal("chorus executions cancel: the viewer role cannot control (HTTP 403)\n", err)
      code, _, err = chorus("registry reload", venv)
      assert.equal(1, code)
      assert.matches("the viewer role cannot admin %(HTTP 403%)", err)
      code, _, err = chorus("events", venv)
      assert.equal(1, code)
      assert.matches("chorus events: the viewer role cannot admin %(HTTP 403%)", err)
      -- The admin's key from the database works as the CLI's key.
      code, _, err = chorus("executions cancel " .. t, { CHORUS_SERVER = node.base, CHORUS_API_KEY = admin })
      assert.equal(0, code, err)
      wait_status(t, "cancelled")
    end)
  end)

  it("fails clearly: unknown trace, no database, never showing the password", function()
    local unknown = "00000000-0000-4000-8000-000000000000"
    local code, _, err = chorus(("executions show %s --db %s"):format(unknown, url))
    assert.equal(1, code)
    assert.equal("chorus executions show: no execution " .. unknown .. "\n", err)
    code, _, err = chorus(("executions pause %s --db %s"):format(unknown, url))
    assert.equal(1, code)
    assert.equal("chorus executions pause: no execution " .. unknown .. "\n", err)
    local reservation, free = require("chorus.native").reserve_port("127.0.0.1", 0)
    reservation:close()
    code, _, err = chorus(("executions list --db postgresql://u:s3cret@127.0.0.1:%d/x"):format(free))
    assert.equal(1, code)
    assert.matches("cannot connect to the database", err, 1, true)
    assert.is_nil(err:find("s3cret", 1, true))
    code, _, err = chorus("events --db " .. url)
    assert.equal(2, code)
    assert.matches("unknown option %-%-db", err)
  end)
end)
