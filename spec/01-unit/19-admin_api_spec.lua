-- What the admin page needs from the API (chorus.api as a function, over
-- the memory store): PATCH of a config, executions by time range with
-- totals, stats, whoami, the graph of an execution, registry load errors
-- with their line, and the page's own files (safe paths, types, ETag).
local h = require "spec.helpers"
local api = require "chorus.api"
local auth = require "chorus.api.auth"
local json = require "chorus.json"
local memory = require "chorus.store.memory"
local runner_mod = require "chorus.run.memory"
local admin_routes = require "chorus.api.admin_routes"

local function new_service(opts)
  local store = memory.new(opts)
  local engine = h.engine({ store = store })
  local svc = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
    auth = auth.new({ store = store, ttl_ms = 0 }) }
  svc.app = api.new(svc)
  return svc
end

local function key_for(svc, tenant, user, role)
  local key, k = auth.generate()
  svc.store:create_key({ prefix = k.prefix, hash = k.hash, tenant_id = tenant, user_id = user, role = role })
  return key
end

local function call(svc, method, path, body, key, headers)
  local p, q = path:match("^([^?]*)%??(.*)$")
  local hd = { ["content-type"] = "application/json" }
  if key then hd.authorization = "Bearer " .. key end
  for k, v in pairs(headers or {}) do hd[k] = v or nil end
  if type(body) == "table" then body = json.encode(body) end
  local status, rh, rb = svc.app:handle({ method = method, path = p, query = q, headers = hd, body = body or "" })
  local ok, decoded = pcall(json.decode, rb)
  return status, ok and decoded or nil, rh, rb
end

local CFG = { name = "pat", description = "one", strategy = "sequential", steps = {
  { id = "a", agent = "echo", params = { output = 1 } } } }

describe("admin API", function()
  local svc, op, viewer, admin
  before_each(function()
    svc = new_service()
    op = key_for(svc, "t1", "alice", "operator")
    viewer = key_for(svc, "t1", "victor", "viewer")
    admin = key_for(svc, "t1", "root", "admin")
  end)

  describe("PATCH a config", function()
    before_each(function() assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", CFG, op))) end)

    it("is_active alone makes no new version; an inactive config cannot run", function()
      local s, c = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { is_active = false }, op)
      assert.equal(200, s)
      assert.is_false(c.is_active)
      assert.equal(1, c.version)
      local s2, e = call(svc, "POST", "/api/v1/orchestrations/execute/pat", {}, op)
      assert.equal(409, s2)
      assert.equal("invalid_state", e.error.code)
      assert.equal(200, (call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { is_active = true }, op)))
      assert.equal(202, (call(svc, "POST", "/api/v1/orchestrations/execute/pat", {}, op)))
    end)

    it("changes the fields given, keeps the others, validates the whole (version + 1)", function()
      local s, c = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { description = "two", settings = { timeout_ms = 5000 } }, op)
      assert.equal(200, s)
      assert.equal(2, c.version)
      assert.equal("two", c.description)
      assert.equal(5000, c.steps.settings.timeout_ms)
      assert.equal("a", c.steps.steps[1].id)
      local _, c3 = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { steps = { { id = "z", agent = "echo" } } }, op)
      assert.equal("z", c3.steps.steps[1].id)
      assert.equal(5000, c3.steps.settings.timeout_ms) -- settings kept with flat steps
      local s4, e = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat",
        { steps = { { id = "z", agent = "nope" } }, is_active = "yes", colour = "red" }, op)
      assert.equal(422, s4)
      local paths = {}
      for _, d in ipairs(e.error.details) do paths[d.path] = d.message end
      assert.matches("unknown field", paths.colour)
      assert.matches("boolean", paths.is_active)
      local s5, e5 = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { steps = { { id = "z", agent = "nope" } } }, op)
      assert.equal(422, s5)
      assert.equal("steps[0].agent", e5.error.details[1].path)
      assert.equal(3, select(2, call(svc, "GET", "/api/v1/orchestrations/configs/pat", nil, op)).version)
    end)

    it("refuses viewers, other tenants, a global flip, and says so", function()
      assert.equal(403, (call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { is_active = false }, viewer)))
      local other = key_for(svc, "t2", "mallory", "operator")
      assert.equal(404, (call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { is_active = false }, other)))
      local s, e = call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", { global = true }, op)
      assert.equal(422, s)
      assert.equal("global", e.error.details[1].path)
      assert.equal(200, (call(svc, "PATCH", "/api/v1/orchestrations/configs/pat", {}, op)))
    end)
  end)

  describe("executions list", function()
    it("filters by an RFC 3339 or epoch time range and totals tokens and cost", function()
      local c = { name = "m", strategy = "sequential", steps = { { id = "m", agent = "metered", params = { tokens = 4, cost = 0.5 } } } }
      assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", c, op)))
      for _ = 1, 3 do
        local _, r = call(svc, "POST", "/api/v1/orchestrations/execute/m", {}, op)
        svc.store:get_execution(r.trace_id):wait()
      end
      local s, page = call(svc, "GET", "/api/v1/orchestrations/executions?limit=1", nil, op)
      assert.equal(200, s)
      assert.equal(3, page.total)
      assert.equal(1, #page.items)
      assert.same({ tokens = 12, cost = 1.5 }, page.totals)
      local _, none = call(svc, "GET", "/api/v1/orchestrations/executions?since=2999-01-01T00:00:00Z", nil, op)
      assert.equal(0, none.total)
      local _, all = call(svc, "GET", "/api/v1/orchestrations/executions?since=2020-01-01T00:00:00%2B02:00&until=4102444800", nil, op)
      assert.equal(3, all.total)
      local s2, e = call(svc, "GET", "/api/v1/orchestrations/executions?until=tomorrow", nil, op)
      assert.equal(400, s2)
      assert.equal("query.until", e.error.details[1].path)
      -- a viewer sees its own executions only: none
      local _, v = call(svc, "GET", "/api/v1/orchestrations/executions", nil, viewer)
      assert.equal(0, v.total)
      assert.same({ tokens = 0, cost = 0 }, v.totals)
    end)

    it("parses RFC 3339 date-times with offsets and fractions", function()
      assert.equal(0, api.parse_time("1970-01-01T00:00:00Z"))
      assert.equal(1767225600.25, api.parse_time("2026-01-01T00:00:00.25Z"))
      assert.equal(1767225600 - 7200, api.parse_time("2026-01-01T00:00:00+02:00"))
      assert.equal(951782400, api.parse_time("2000-02-29T00:00:00Z"))
      assert.equal(12.5, api.parse_time("12.5"))
      for _, bad in ipairs({ "2026-13-01T00:00:00Z", "2026-01-01", "2026-01-01T00:00:00", "x", "2026-01-01T00:00:00.Z" }) do
        assert.is_nil(api.parse_time(bad), bad)
      end
    end)
  end)

  it("stats: the caller's own numbers; admins everyone's; the window is checked", function()
    assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", CFG, op)))
    local _, r = call(svc, "POST", "/api/v1/orchestrations/execute/pat", {}, op)
    svc.store:get_execution(r.trace_id):wait()
    local s, st = call(svc, "GET", "/api/v1/stats", nil, op)
    assert.equal(200, s)
    assert.equal(1, st.executions.total)
    assert.equal(3600, st.window_s)
    assert.equal(0, select(2, call(svc, "GET", "/api/v1/stats", nil, viewer)).executions.total)
    assert.equal(1, select(2, call(svc, "GET", "/api/v1/stats?window=600", nil, admin)).executions.total)
    assert.equal(0, select(2, call(svc, "GET", "/api/v1/stats?user_id=nobody", nil, admin)).executions.total)
    assert.equal(400, (call(svc, "GET", "/api/v1/stats?window=59", nil, op)))
    assert.equal(400, (call(svc, "GET", "/api/v1/stats?window=86401", nil, op)))
  end)

  -- An ended execution's steps are kept by latency bucket (memory_stats,
  -- keyed half a unit off so LuaJIT compiles the recording): the
  -- quantiles come back on the bucket of the step's own latency.
  it("stats: step latency of ended executions, on the step's own bucket", function()
    local stats = require "chorus.store.stats"
    local cfg = { name = "lat", strategy = "sequential", steps = {
      { id = "d", agent = "delay", params = { ms = 30 } } } }
    assert.equal(201, (call(svc, "POST", "/api/v1/orchestrations/configs", cfg, op)))
    local _, r = call(svc, "POST", "/api/v1/orchestrations/execute/lat", {}, op)
    local exec = svc.store:get_execution(r.trace_id)
    exec:wait()
    local _, rec = call(svc, "GET", "/api/v1/orchestrations/status/" .. r.trace_id, nil, op)
    local ms = rec.steps[1].latency_ms
    local _, st = call(svc, "GET", "/api/v1/stats", nil, op)
    local row
    for _, l in ipairs(st.step_latency) do if l.agent == "delay" then row = l end end
    assert.is_table(row)
    assert.equal(1, row.count)
    local want = math.floor(stats.value(stats.bucket(ms)) * 1000 + 0.5) / 1000
    assert.equal(want, row.p50_ms)
    assert.equal(want, row.p99_ms)
    assert.is_true(math.abs(row.avg_ms - ms) < 0.001)
  end)

  it("whoami says the role and what it may do", function()
    local _, w = call(svc, "GET", "/api/v1/whoami", nil, viewer)
    assert.equal("viewer", w.role)
    assert.equal("victor", w.user_id)
    assert.is_true(w.can.read)
    assert.is_false(w.can.write)
    assert.is_false(w.can.admin)
    assert.is_true(select(2, call(svc, "GET", "/api/v1/whoami", nil, admin)).can.admin)
    assert.equal(401, (call(svc, "GET", "/api/v1/whoami", nil, "chk_" .. ("0"):rep(64))))
  end)

  it("graph: the steps as run, or the current config once the run is archived", function()
    local s2 = new_service({ recent = 0 })
    local k = key_for(s2, "t1", "alice", "operator")
    local doc = { name = "g", strategy = "parallel", steps = {
      { id = "a", agent = "echo" }, { id = "b", agent = "echo", dependencies = { "a" }, approval = true } } }
    assert.equal(201, (call(s2, "POST", "/api/v1/orchestrations/configs", doc, k)))
    local _, r = call(s2, "POST", "/api/v1/orchestrations/execute/g", {}, k)
    local s, g = call(s2, "GET", "/api/v1/orchestrations/executions/" .. r.trace_id .. "/graph", nil, k)
    assert.equal(200, s)
    assert.is_true(g.as_run)
    assert.same({ "a" }, g.steps[2].dependencies)
    assert.is_true(g.steps[2].approval)
    s2.store:get_execution(r.trace_id):cancel()
    h.wait_until(function() return s2.store:get_record(r.trace_id).status == "cancelled" end)
    local _, g2 = call(s2, "GET", "/api/v1/orchestrations/executions/" .. r.trace_id .. "/graph", nil, k)
    assert.is_false(g2.as_run)
    assert.equal(1, g2.version)
    assert.equal("b", g2.steps[2].id)
    assert.equal(404, (call(s2, "GET", "/api/v1/orchestrations/executions/00000000-0000-4000-8000-000000000000/graph", nil, k)))
    assert.equal(400, (call(s2, "GET", "/api/v1/orchestrations/executions/nope/graph", nil, k)))
  end)

  it("registry load errors carry the line Lua reported", function()
    local dir = h.tmpdir()
    h.write(dir .. "/agents/broken.lua", "return {\n  name = 'broken',\n  call = function(\nend\n")
    local store = memory.new()
    local engine = h.engine({ store = store, scripts = { dir } })
    local s = { engine = engine, store = store, runner = runner_mod.new({ engine = engine }),
      auth = auth.new({ store = store, ttl_ms = 0, anonymous = { role = "admin", admin = true } }) }
    s.app = api.new(s)
    local _, reg = call(s, "GET", "/api/v1/registry")
    assert.equal(1, #reg.errors)
    assert.matches("broken%.lua", reg.errors[1].file)
    assert.equal(4, reg.errors[1].line)
    local _, rel = call(s, "POST", "/api/v1/registry/reload")
    assert.equal(4, rel.errors[1].line)
  end)

  describe("the admin page's files", function()
    local web
    before_each(function()
      web = h.tmpdir()
      os.execute("mkdir -p " .. web .. "/js")
      h.write(web .. "/index.html", "<!doctype html><title>x</title>")
      h.write(web .. "/js/app.js", "export const x = 1;\n")
      h.write(web .. "/.secret.js", "hidden")
      svc.web_dir = web
    end)

    local function get(path, headers, method)
      local s, hd, b = svc.app:handle({ method = method or "GET", path = path, query = "", headers = headers or {}, body = "" })
      return s, hd, b
    end

    it("serves files with their type, an ETag and 304, and security headers", function()
      local s, hd, b = get("/admin/")
      assert.equal(200, s)
      assert.equal("text/html; charset=utf-8", hd["content-type"])
      assert.matches("<title>x</title>", b)
      assert.equal("nosniff", hd["x-content-type-options"])
      assert.matches("script%-src 'self'", hd["content-security-policy"])
      local s2, h2, b2 = get("/admin/js/app.js")
      assert.equal(200, s2)
      assert.equal("text/javascript; charset=utf-8", h2["content-type"])
      assert.equal("export const x = 1;\n", b2)
      assert.equal("no-cache", h2["cache-control"])
      assert.matches('^"%x+"$', h2.etag)
      local s3, _, b3 = get("/admin/js/app.js", { ["if-none-match"] = h2.etag })
      assert.equal(304, s3)
      assert.equal("", b3)
      local s4, _, b4 = get("/admin/js/app.js", nil, "HEAD")
      assert.equal(200, s4)
      assert.equal("", b4)
    end)

    it("redirects /, /docs and /admin", function()
      local s, hd = get("/")
      assert.equal(302, s)
      assert.equal("/admin/", hd.location)
      s, hd = get("/docs")
      assert.equal(302, s)
      assert.equal("/admin/#/api", hd.location)
      s, hd = get("/admin")
      assert.equal(301, s)
      assert.equal("/admin/", hd.location)
    end)

    it("answers an HTML 404 for traversal, hidden files, odd names and missing files", function()
      for _, p in ipairs({ "/admin/../CMakeLists.txt", "/admin/..%2fCMakeLists.txt", "/admin/js/../../x.js",
        "/admin/.secret.js", "/admin/js//app.js", "/admin/js/", "/admin/nope.js", "/admin/app.exe",
        "/admin/%2e%2e/x.html", "/admin/a%00.js", "/admin/bad%zz.js", "/admin/js/app.js/" }) do
        local s, hd, b = get(p)
        assert.equal(404, s, p)
        assert.equal("text/html; charset=utf-8", hd["content-type"], p)
        assert.matches("Page not found", b, 1, true)
      end
      assert.is_nil(admin_routes.relative("/admin/a/./b.js"))
      assert.equal("js/app.js", admin_routes.relative("/admin/js/app.js"))
    end)

    it("only GET and HEAD; API paths keep the JSON 404", function()
      local s, hd = get("/admin/index.html", nil, "POST")
      assert.equal(405, s)
      assert.equal("GET, HEAD", hd.allow)
      local s2, h2, b2 = get("/api/v1/nope")
      assert.equal(404, s2)
      assert.equal("application/json", h2["content-type"])
      assert.equal("not_found", json.decode(b2).error.code)
      assert.equal(404, (get("/administrator")))
    end)

    it("serves the repository's web/ by default", function()
      svc.web_dir = nil
      local s, _, b = get("/admin/")
      assert.equal(200, s)
      assert.matches('src="/admin/js/app.js"', b, 1, true)
      assert.equal(200, (get("/admin/css/app.css")))
      assert.equal("image/svg+xml", select(2, get("/admin/favicon.svg"))["content-type"])
    end)
  end)
end)
