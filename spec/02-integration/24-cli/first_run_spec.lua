-- The first run of `chorus serve`, as a new user meets it: in memory with
-- no key, it makes an admin key and prints it once (with the admin page's
-- address and how to keep it), and the key works; a malformed
-- CHORUS_ADMIN_KEY is refused with the format; --no-auth is a warning;
-- with a database, it says how to make the first admin key.
-- #postgres
local h = require "spec.helpers"
local srv = require "spec.support.serve"
local client = require "chorus.http.client"
local json = require "chorus.json"

local function whoami(s, key)
  local res = assert(client.request({ url = s.base .. "/api/v1/whoami", timeout_ms = 5000,
    headers = key and { authorization = "Bearer " .. key } or nil }))
  return res.status, json.decode(res.body)
end

-- wait_log(s, piece) -> the log once it holds piece (the first-run text
-- follows the "listening" line the start waits for)
local function wait_log(s, piece)
  local log
  h.wait_until(function()
    log = srv.log(s)
    return log:find(piece, 1, true) ~= nil
  end, 5000)
  return log
end

local function count(text, piece)
  local n, i = 0, 1
  while true do
    local at = text:find(piece, i, true)
    if not at then return n end
    n, i = n + 1, at + #piece
  end
end

describe("chorus serve, first run", function()
  it("makes an admin key, prints it once with the admin page's URL and how to keep it, and the key works", function()
    local s = srv.start("--log-format text", { CHORUS_ADMIN_KEY = false })
    finally(function() srv.stop(s) end)
    local log = wait_log(s, "CHORUS_ADMIN_KEY=chk_")
    local key = log:match("\n    (chk_%x+)\n")
    assert(key, log)
    assert.is_true(require("chorus.api.auth").well_formed(key))
    assert.matches(("Sign in at http://127.0.0.1:%d/admin/"):format(s.port), log, 1, true)
    assert.matches("CHORUS_ADMIN_KEY=" .. key, log, 1, true)
    -- Once: the banner's two places, and no other line has it.
    assert.equal(2, count(log, key))
    local st, me = whoami(s, key)
    assert.equal(200, st)
    assert.equal("admin", me.role)
    assert.equal(401, (whoami(s, nil)))
    -- Requests made with it log nothing of it either.
    for _ = 1, 3 do whoami(s, key) end
    srv.stop(s)
    assert.equal(2, count(srv.log(s), key))
  end)

  -- With JSON records (--log-format json, the default when stderr is not
  -- a terminal), the key is one record of its own: every line parses.
  local function json_key(s)
    local log = wait_log(s, '"admin_key":"chk_')
    local key, url
    for line in log:gmatch("[^\n]+") do
      local rec = json.decode(line)
      assert(type(rec) == "table", "not a JSON record: " .. line)
      if rec.admin_key then key, url = rec.admin_key, rec.admin_url end
    end
    assert.equal(1, count(log, key))
    assert.equal(("http://127.0.0.1:%d/admin/"):format(s.port), url)
    return key
  end

  it("makes a new key each start: nothing is kept (and with JSON records, the key is one record)", function()
    local a = srv.start("--log-format json", { CHORUS_ADMIN_KEY = false })
    local a_up = true -- stopped here when an assertion fails before it is stopped below
    finally(function() if a_up then srv.stop(a) end end)
    local ka = json_key(a)
    srv.stop(a)
    a_up = false
    local b = srv.start("", { CHORUS_ADMIN_KEY = false }) -- JSON: stderr is a file
    finally(function() srv.stop(b) end)
    local kb = json_key(b)
    assert.is_string(ka)
    assert.is_string(kb)
    assert.not_equal(ka, kb)
    assert.equal(401, (whoami(b, ka)))
    assert.equal(200, (whoami(b, kb)))
  end)

  it("uses CHORUS_ADMIN_KEY when given, and prints no key at all", function()
    local key = "chk_" .. ("5e"):rep(32)
    local s = srv.start("", { CHORUS_ADMIN_KEY = key })
    finally(function() srv.stop(s) end)
    assert.equal(200, (whoami(s, key)))
    local log = srv.log(s)
    assert.equal(0, count(log, key))
    assert.equal(0, count(log, key:sub(13))) -- beyond its public prefix (the access log's key_id)
  end)

  it("refuses a malformed CHORUS_ADMIN_KEY at start with the expected format (exit 2), never echoing it", function()
    local cases = {
      { "chk_abc", "it has 7 characters, not 68" },
      { "chk_" .. ("AB"):rep(32), "it has characters other than 0%-9 and a%-f" },
      { "key_" .. ("ab"):rep(32), "it does not start with chk_" },
      { "chk_" .. ("ab"):rep(32) .. "\n", "it has 69 characters" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = srv.chorus("serve --listen 127.0.0.1:0", { CHORUS_ADMIN_KEY = c[1] })
      assert.equal(2, code, err)
      assert.equal("", out)
      assert.matches("CHORUS_ADMIN_KEY is not a valid API key: " .. c[2], err)
      assert.matches("chk_ followed by 64 lowercase hex digits", err, 1, true)
      assert.is_nil(err:find(c[1], 1, true))
    end
  end)

  it("logs --no-auth as a warning, and makes no key", function()
    local s = srv.start("--no-auth", { CHORUS_ADMIN_KEY = false })
    finally(function() srv.stop(s) end)
    local log = wait_log(s, "--no-auth:")
    assert.matches('"level":"warn","msg":"serve: %-%-no%-auth: no API keys are checked', log)
    assert.not_matches("chk_", log)
    assert.equal(200, (whoami(s, nil)))
  end)

  it("--workers 2: one key for both workers, printed once", function()
    local s = srv.start("--workers 2 --log-format text", { CHORUS_ADMIN_KEY = false })
    finally(function() srv.stop(s) end)
    assert.is_true(h.wait_until(function()
      local _, n = srv.log(s):gsub("listening on", "")
      return n >= 2
    end, 10000))
    local log = wait_log(s, "CHORUS_ADMIN_KEY=chk_")
    local key = log:match("\n    (chk_%x+)\n")
    assert(key, log)
    assert.equal(2, count(log, key))
    assert.equal(1, count(log, "no admin key was given"))
    -- New connections land on either worker: each accepts the key.
    local nodes = {}
    for _ = 1, 40 do
      local res = assert(client.request({ url = s.base .. "/api/v1/whoami", timeout_ms = 5000,
        headers = { authorization = "Bearer " .. key, connection = "close" } }))
      assert.equal(200, res.status)
      local hz = assert(client.request({ url = s.base .. "/healthz", headers = { connection = "close" } }))
      nodes[json.decode(hz.body).node] = true
    end
    local n = 0
    for _ in pairs(nodes) do n = n + 1 end
    assert.equal(2, n)
  end)

  describe("with PostgreSQL", function()
    if not h.pg_url() then
      pending("CHORUS_TEST_PG is not set")
      return
    end

    it("says how to make the first admin key, until one exists, and makes none itself", function()
      local url = h.fresh_db("first_run")
      local stray = "chk_" .. ("7a"):rep(32)
      local s = srv.start("--db " .. url, { CHORUS_ADMIN_KEY = stray })
      wait_log(s, "--db URL")
      srv.stop(s)
      local log = srv.log(s)
      for line in log:gmatch("[^\n]+") do -- JSON records (stderr is a file), the notice one of them
        assert(type(json.decode(line)) == "table", "not a JSON record: " .. line)
      end
      assert.matches("the database has no admin API key yet", log, 1, true)
      assert.matches("chorus keys create --tenant default --user admin --role admin --db URL", log, 1, true)
      assert.matches("CHORUS_ADMIN_KEY is not used with a database", log, 1, true)
      assert.not_matches(stray, log)
      assert.not_matches(url, log, 1, true)
      -- The stray key is no key of this server.
      local code, out = srv.chorus(("keys create --tenant default --user admin --role admin --db %s"):format(url))
      assert.equal(0, code)
      local key = out:match("(chk_%x+)%s*$")
      s = srv.start("--db " .. url, { CHORUS_ADMIN_KEY = false })
      finally(function() srv.stop(s) end)
      assert.equal(200, (whoami(s, key)))
      require("chorus.sched").sleep(300) -- the check runs right after the start
      assert.not_matches("no admin API key", srv.log(s), 1, true)
      assert.equal(200, (whoami(s, key)))
      assert.equal(401, (whoami(s, stray)))
    end)
  end)
end)
