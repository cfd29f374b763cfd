-- chorus.log: records as JSON lines and as text, fields, levels, secrets
-- taken out, the access record, the engine's records, and the options
-- that configure it. Records are captured through log.sink (the line as
-- it would go to stderr).
local log = require "chorus.log"
local json = require "chorus.json"
local h = require "spec.helpers"

local TS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

-- capture(fn) -> the lines written while fn ran, at level (default debug)
-- and format (default json)
local function capture(fn, level, format)
  local lines = {}
  local old_sink, old_level, old_format = log.sink, log.level, log.format
  log.sink = { write = function(_, s) lines[#lines + 1] = s end }
  log.level = log.LEVELS[level or "debug"]
  assert(log.configure({ format = format or "json" }))
  local ok, err = pcall(fn)
  log.sink, log.level = old_sink, old_level
  assert(log.configure({ format = old_format }))
  assert(ok, err)
  return lines
end

local function records(lines)
  local out = {}
  for i, l in ipairs(lines) do
    assert.equal("\n", l:sub(-1), "a record is one line")
    assert.is_nil(l:sub(1, -2):find("\n", 1, true), "one line per record")
    out[i] = assert(json.decode(l), l)
  end
  return out
end

-- keys_in_order(line) -> the keys of a JSON line, in the order written
local function keys_in_order(line)
  local keys = {}
  for k in line:gmatch('[{,]"([%w_]+)":') do keys[#keys + 1] = k end
  return keys
end

describe("chorus.log", function()
  after_each(function() log.set_field("node", nil) end)
  -- These specs write error records on purpose (into their own sink).
  before_each(function() require("spec.support.log_guard").expect("") end)

  it("writes JSON lines with ts (RFC 3339, UTC, ms), level, msg and fields as values", function()
    local lines = capture(function()
      log.info("plain %s %d", "text", 42)
      log.warn_with({ trace_id = "t-1", execution_id = "e-1", step_id = "s1", attempt = 2, ok = true,
        ratio = 0.25, detail = { a = { 1, 2 } } }, "with %s", "fields")
      log.error("no args keeps %d as is")
    end)
    local r = records(lines)
    assert.equal(3, #r)
    assert.matches(TS, r[1].ts)
    assert.same({ "info", "plain text 42" }, { r[1].level, r[1].msg })
    assert.equal("warn", r[2].level)
    assert.equal("with fields", r[2].msg)
    assert.same({ "t-1", "e-1", "s1", 2, true, 0.25 },
      { r[2].trace_id, r[2].execution_id, r[2].step_id, r[2].attempt, r[2].ok, r[2].ratio })
    assert.same({ a = { 1, 2 } }, r[2].detail)
    -- ids first, in a fixed order, after ts, level, msg
    local keys = keys_in_order(lines[2])
    assert.same({ "ts", "level", "msg", "trace_id", "execution_id", "step_id" }, { unpack(keys, 1, 6) })
    assert.equal("no args keeps %d as is", r[3].msg)
  end)

  it("keeps the order of fields given as a list, leaving nil values out", function()
    local lines = capture(function()
      log.info_with({ "method", "GET", "route", "/x/{id}", "key_id", nil, "status", 200 }, "http request")
    end)
    assert.same({ "ts", "level", "msg", "method", "route", "status" }, keys_in_order(lines[1]))
  end)

  it("log.line takes the fields as arguments: the same record as the list form, msg not formatted", function()
    local native = require "chorus.native"
    log.set_field("node", "host:1:ab")
    local lines = capture(function()
      log.line(2, "done 100%s", "method", "GET", "key_id", nil, "status", 200, "ok", true, "t", { 1 },
        "bad", "a\0b\"")
    end)
    local r = records(lines)[1]
    assert.same({ "ts", "level", "msg", "method", "status", "ok", "t", "bad", "node" }, keys_in_order(lines[1]))
    assert.same({ "info", "done 100%s", "GET", 200, true, { 1 }, 'a\239\191\189b"', "host:1:ab" },
      { r.level, r.msg, r.method, r.status, r.ok, r.t, r.bad, r.node })
    -- The native formatter itself (what log.line hands to stderr): the
    -- argument form gives the list form's line, a key that is not text
    -- ends the fields, a key without a value is dropped.
    local list, args, cut, odd
    capture(function()
      list = native.log_format("warn", "m", { "a", "x", "b", nil, "c", 3.5, "d", 'q"\n' })
      args = native.log_format("warn", "m", "a", "x", "b", nil, "c", 3.5, "d", 'q"\n')
      cut = json.decode(native.log_format("info", "m", "a", 1, 2, "x", "b"))
      odd = json.decode(native.log_format("info", "m", "a", 1, "b"))
    end)
    assert.equal(list:gsub('"ts":"[^"]*"', ""), (args:gsub('"ts":"[^"]*"', "")))
    assert.same({ 1, "host:1:ab" }, { cut.a, cut.node })
    assert.is_nil(cut.x)
    assert.is_nil(odd.b)
    log.set_field("node", nil)
  end)

  it("adds the process's fields (node) to every record; a record may give its own", function()
    log.set_field("node", "host:1:ab")
    local r = records(capture(function()
      log.info("a")
      log.info_with({ node = "other" }, "b")
      log.info_with({ "x", 1 }, "c")
    end))
    assert.same({ "host:1:ab", "other", "host:1:ab" }, { r[1].node, r[2].node, r[3].node })
    log.set_field("node", nil)
    r = records(capture(function() log.info("d") end))
    assert.is_nil(r[1].node)
  end)

  it("escapes what JSON needs and turns bad bytes and NULs into U+FFFD: every line parses", function()
    local r = records(capture(function()
      log.info_with({ bad = "a\0b\255\254c", quote = 'say "hi"\\', nl = "x\ny\tz\1" }, "m\nwith \"quotes\" \255")
    end))
    assert.equal('m\nwith "quotes" \239\191\189', r[1].msg)
    assert.equal("a\239\191\189b\239\191\189\239\191\189c", r[1].bad)
    assert.equal('say "hi"\\', r[1].quote)
    assert.equal("x\ny\tz\1", r[1].nl)
  end)

  it("builds a record while another is being built (a table field's encoder that logs)", function()
    local native = require "chorus.native"
    local ok, lines = pcall(capture, function()
      native.log_setup({ encode = function() log.info("nested %d", 1) return '{"n":1}' end })
      log.info_with({ t = {}, a = "x" }, "outer")
    end)
    assert(log.configure({ format = log.format })) -- the usual encoder again
    assert(ok, lines)
    local r = records(lines)
    assert.same({ "nested 1", "outer" }, { r[1].msg, r[2].msg })
    assert.same({ { n = 1 }, "x" }, { r[2].t, r[2].a })
  end)

  it("writes text as today's look plus key=value pairs, quoted when needed", function()
    log.set_field("node", "n1")
    local lines = capture(function()
      log.info_with({ "route", "/a/{b}", "error", "no such thing", "n", 3 }, "serve: listening on \"x\"")
      log.debug("two\nlines")
    end, "debug", "text")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d info  serve: listening on \"x\" "
      .. "route=/a/{b} error=\"no such thing\" n=3 node=n1\n$", lines[1])
    assert.matches(" debug two\\nlines node=n1\n$", lines[2])
  end)

  it("filters by level; enabled() says what is written", function()
    local lines = capture(function()
      log.debug("d")
      log.info("i")
      log.warn("w")
      log.error("e")
      local l = log.with({ step_id = "s" })
      l:info("child i")
      l:warn("child w")
      assert.is_false(log.enabled("info"))
      assert.is_true(log.enabled("warn"))
    end, "warn")
    local r = records(lines)
    assert.same({ "w", "e", "child w" }, { r[1].msg, r[2].msg, r[3].msg })
    assert.equal("s", r[3].step_id)
    assert.same({}, capture(function() log.error("nothing") end, "off"))
  end)

  it("child loggers add their fields, and :with adds more", function()
    local r = records(capture(function()
      local a = log.with({ trace_id = "t" })
      local b = a:with({ step_id = "s" })
      a:info("a")
      b:debug("b")
    end))
    assert.same({ "t", nil }, { r[1].trace_id, r[1].step_id })
    assert.same({ "t", "s" }, { r[2].trace_id, r[2].step_id })
  end)

  it("never prints a registered secret, a URL's password or an API key beyond its prefix", function()
    local key = "chk_" .. ("0f"):rep(32)
    log.secret("sk-spec-" .. ("5ecret"):rep(4))
    log.secret("pw\"with\\quote")
    log.secret("tiny") -- too short to register: it would blank common words
    log.secret(key) -- an API key: the key pass takes it out, prefix kept
    log.secret_url("postgresql://chorus:p%40ssw0rd-spec@db:5432/chorus")
    local lines = capture(function()
      log.info("key %s and sk-spec-%s", key, ("5ecret"):rep(4))
      log.info_with({ db = "postgresql://chorus:hunter2-spec@db/x", redis = "redis://:r3dis-pass@h:6379/0",
        quoted = "pw\"with\\quote", decoded = "p@ssw0rd-spec" }, "tiny stays")
    end)
    local text = table.concat(lines)
    for _, s in ipairs({ ("0f"):rep(32), ("0f"):rep(28), "5ecret5ecret", "hunter2-spec", "r3dis-pass",
      "pw\\\"with", "p@ssw0rd-spec", "p%40ssw0rd" }) do
      assert.is_nil(text:find(s, 1, true), s .. " in " .. text)
    end
    local r = records(lines)
    assert.equal("key chk_0f0f0f0f[redacted] and [redacted]", r[1].msg)
    assert.equal("postgresql://chorus:[redacted]@db/x", r[2].db)
    assert.equal("redis://:[redacted]@h:6379/0", r[2].redis)
    assert.equal("[redacted]", r[2].quoted)
    assert.equal("tiny stays", r[2].msg)
  end)

  it("validates levels, formats and the buffer size", function()
    assert.equal(1, log.parse_level("debug"))
    assert.equal(5, log.parse_level("off"))
    assert.matches("must be one of debug, info, warn, error, off, got 'loud'", select(2, log.parse_level("loud")))
    assert.matches("must be json or text, got 'xml'", select(2, log.parse_format("xml")))
    assert.is_nil(log.parse_buffer_kb("8"))
    assert.equal(64, log.parse_buffer_kb("64"))
    local ok, err = log.configure({ level = "verbose" })
    assert.is_nil(ok)
    assert.matches("log level must be one of", err)
  end)

  describe("chorus.cli.logopts", function()
    local logopts = require "chorus.cli.logopts"
    local saved
    before_each(function() saved = { log.level, log.format } end)
    after_each(function() log.level = saved[1] assert(log.configure({ format = saved[2] })) end)

    it("adds --log-level and --log-format before --help, and applies them", function()
      local spec, order = { help = { type = "flag" } }, { "db", "help" }
      logopts.add(spec, order)
      assert.same({ "db", "log-level", "log-format", "help" }, order)
      assert.is_table(spec["log-level"])
      assert.is_true(logopts.apply({ ["log-level"] = "warn", ["log-format"] = "text" }))
      assert.same({ 3, "text" }, { log.level, log.format })
    end)

    it("refuses a bad value, naming where it came from", function()
      local ok, err = logopts.apply({ ["log-level"] = "chatty" })
      assert.is_nil(ok)
      assert.equal("--log-level must be one of debug, info, warn, error, off, got 'chatty'", err)
      ok, err = logopts.apply({ ["log-format"] = "yaml" })
      assert.is_nil(ok)
      assert.equal("--log-format must be json or text, got 'yaml'", err)
    end)

    it("makes the passwords of --db and --redis secrets", function()
      assert.is_true(logopts.apply({ db = "postgresql://u:db-pass-from-flag@h/x", redis = "redis://:redis-pass-flag@h" }))
      local text = table.concat(capture(function() log.info("db-pass-from-flag redis-pass-flag") end))
      assert.is_nil(text:find("pass-from-flag", 1, true))
      assert.is_nil(text:find("redis-pass-flag", 1, true))
    end)
  end)

  describe("access records", function()
    local access = require "chorus.log.access"
    local native = require "chorus.native"

    it("has the route template, status, duration, key prefix, remote and trace id; never the key", function()
      local key = "chk_" .. ("ab"):rep(32)
      local req = { method = "GET", path = "/api/v1/orchestrations/status/5d0c?api_key=" .. key, remote = "127.0.0.1",
        route = "/api/v1/orchestrations/status/{trace_id}", trace_id = "5d0c",
        principal = { key_id = "uuid-1", key_prefix = key:sub(1, 12) } }
      local lines = capture(function()
        access.record(req, 200, native.now() - 2.5)
        access.record({ method = "GET", path = "/nothing/" .. key, remote = "::1" }, 404, native.now())
      end, "info")
      local r = records(lines)
      assert.same({ "http request", "GET", "/api/v1/orchestrations/status/{trace_id}", 200, "chk_abababab", "127.0.0.1",
        "5d0c" }, { r[1].msg, r[1].method, r[1].route, r[1].status, r[1].key_id, r[1].remote, r[1].trace_id })
      assert.is_true(r[1].duration_ms >= 2.5 and r[1].duration_ms < 1000, tostring(r[1].duration_ms))
      assert.equal("unmatched", r[2].route)
      assert.is_nil(r[2].key_id)
      assert.is_nil(table.concat(lines):find(("ab"):rep(32), 1, true))
      assert.same({}, capture(function() access.record(req, 200, native.now()) end, "warn"))
    end)
  end)

  describe("the engine's records", function()
    local events = require "chorus.log.events"

    local function run(doc, level)
      local engine = h.engine()
      local exec
      local lines = capture(function()
        local detach = events.attach(engine)
        exec = h.run(doc, { x = 1 }, { engine = engine })
        engine.registry:reload()
        if engine.registry.on_reload then engine.registry.on_reload(engine.registry.current) end
        detach()
      end, level)
      return records(lines), exec
    end

    it("records the start and end of an execution at info, with its ids, config, status and latency", function()
      local r, exec = run(h.flat("sequential", { { id = "a", agent = "echo" },
        { id = "b", agent = "fail", on_failure = "abort", dependencies = { "a" } } }), "info")
      local msgs = {}
      for i, x in ipairs(r) do msgs[i] = x.msg end
      assert.same({ "execution started", "execution failed", "registry reloaded" }, msgs)
      for i = 1, 2 do
        assert.same({ exec.trace_id, exec.id, "spec" }, { r[i].trace_id, r[i].execution_id, r[i].config })
      end
      assert.equal("failed", r[2].status)
      assert.matches("failed on purpose", r[2].error)
      assert.is_number(r[2].latency_ms)
      assert.is_number(r[3].generation)
      assert.is_true(r[3].agents > 0 and r[3].strategies > 0)
      assert.equal(0, r[3].errors)
    end)

    it("records step transitions at debug, with step id, agent, attempt, status and error", function()
      local r = run(h.flat("sequential", { { id = "a", agent = "echo" },
        { id = "b", agent = "fail", on_failure = "continue", retry = { max_attempts = 2 } } }), "debug")
      local steps = {}
      for _, x in ipairs(r) do
        if x.step_id then steps[#steps + 1] = x.step_id .. ":" .. x.msg .. ":" .. tostring(x.attempt) end
      end
      assert.same({ "a:step running:1", "a:step completed:1", "b:step running:1", "b:step retry:1",
        "b:step failed:2" }, { steps[1], steps[2], steps[3], steps[4], steps[#steps] })
      local last
      for _, x in ipairs(r) do if x.step_id == "b" and x.msg == "step failed" then last = x end end
      assert.equal("fail", last.agent)
      assert.matches("failed on purpose", last.error)
    end)

    it("a strategy's ctx:log carries the execution's ids as fields", function()
      local dir = h.tmpdir()
      h.write(dir .. "/strategies/chatty.lua", [[
        return { name = "chatty", version = "1.0.0", run = function(ctx, steps)
          ctx:log("warn", "about to run %d steps", #steps)
          return ctx:run_step(steps[1])
        end }
      ]])
      local engine = h.engine({ scripts = { dir } })
      local exec
      local r = records(capture(function()
        exec = h.run(h.flat("chatty", { { id = "a", agent = "echo" } }), {}, { engine = engine })
      end, "warn"))
      os.execute("rm -rf " .. dir)
      assert.equal(1, #r)
      assert.equal(("[execution %s trace %s] about to run 1 steps"):format(exec.id, exec.trace_id), r[1].msg)
      assert.same({ exec.trace_id, exec.id }, { r[1].trace_id, r[1].execution_id })
    end)

    it("costs nothing below info: no subscriber on the bus", function()
      local engine = h.engine()
      local before = engine.bus.n
      local detach
      capture(function() detach = events.attach(engine) end, "warn")
      assert.equal(before, engine.bus.n)
      detach()
    end)
  end)
end)
