-- The parts of the CLI for a running system: the option parser and its
-- subcommands, the line diff, canonical pretty JSON, what tables and times
-- look like, server URLs, key formats.
local args = require "chorus.cli.args"
local diff = require "chorus.cli.diff"
local json = require "chorus.json"
local render = require "chorus.cli.render"
local remote = require "chorus.cli.remote"
local auth = require "chorus.api.auth"
local h = require "spec.helpers"

-- A file standing in for stdout or stderr while a command runs.
local function capture(fn)
  local out, err = io.tmpfile(), io.tmpfile()
  local so, se = io.stdout, io.stderr
  rawset(io, "stdout", out)
  rawset(io, "stderr", err)
  local ok, code = pcall(fn)
  rawset(io, "stdout", so)
  rawset(io, "stderr", se)
  local function read(f)
    f:seek("set")
    local s = f:read("*a")
    f:close()
    return s
  end
  assert(ok, code)
  return code, read(out), read(err)
end

describe("chorus.cli.args", function()
  local ran
  local group = args.group({
    name = "things", about = "Things.",
    common = { server = { type = "string", arg = "URL", help = "where" } }, common_order = { "server" },
    commands = {
      { name = "list", args = "[options]", about = "List them.", default = true,
        spec = { limit = { type = "string", arg = "N", help = "how many" } }, order = { "limit" },
        run = function(opts, pos) ran = { "list", opts, pos } return 0 end },
      { name = "move", args = "FROM TO [options]", about = "Move one.", min = 2, max = 2,
        run = function(opts, pos) ran = { "move", opts, pos } return 0 end, exit_codes = "exit codes: 0 moved" },
    },
  })

  before_each(function() ran = nil end)

  it("parses --name VALUE, --name=VALUE, flags, -x and --", function()
    local spec = { a = { type = "string" }, f = { type = "flag", short = "f" }, l = { type = "list" } }
    local opts, pos = args.parse({ "--a", "1", "x", "-f", "--l=2", "--l", "3", "--", "--a" }, spec)
    assert.same({ a = "1", f = true, l = { "2", "3" } }, opts)
    assert.same({ "x", "--a" }, pos)
    assert.same({ nil, "unknown option --b" }, { args.parse({ "--b" }, spec) })
    assert.same({ nil, "option --a needs a value" }, { args.parse({ "--a" }, spec) })
    assert.same({ nil, "option --f takes no value" }, { args.parse({ "--f=1" }, spec) })
    assert.same({ nil, "unknown option -z" }, { args.parse({ "-z" }, spec) })
  end)

  it("checks whole numbers in a range", function()
    assert.equal(5, args.integer({ n = "5" }, "n", 1, 10))
    assert.is_nil(args.integer({}, "n", 1, 10))
    for _, bad in ipairs({ "0", "11", "1.5", "x", "", "1e1" }) do
      local v, err = args.integer({ n = bad }, "n", 1, 10)
      assert.is_false(v)
      assert.equal(("--n must be a whole number from 1 to 10, got '%s'"):format(bad), err)
    end
  end)

  it("runs a subcommand with its own and the common options", function()
    assert.equal(0, (capture(function() return group({ "move", "a", "b", "--server", "u" }) end)))
    assert.same({ "move", { server = "u" }, { "a", "b" } }, ran)
    assert.equal(0, (capture(function() return group({ "--limit", "3" }) end)))
    assert.same({ "list", { limit = "3" }, {} }, ran)
  end)

  it("prints help on stdout and exits 0, for the group and each command", function()
    local code, out, err = capture(function() return group({ "--help" }) end)
    assert.equal(0, code)
    assert.equal("", err)
    assert.matches("^usage: chorus things COMMAND %[options%]\n\nThings%.\n\ncommands:\n  list", out)
    assert.matches("  move FROM TO  Move one%.", out)
    assert.matches("exit codes: 0 ok, 1 failed, 2 bad usage", out)
    code, out = capture(function() return group({ "move", "-h" }) end)
    assert.equal(0, code)
    assert.matches("^usage: chorus things move FROM TO %[options%]\n\nMove one%.\n\noptions:\n", out)
    assert.matches("%-%-server URL", out)
    assert.matches("exit codes: 0 moved", out)
    code, out = capture(function() return group({ "help", "list" }) end)
    assert.equal(0, code)
    assert.matches("^usage: chorus things list %[options%]", out)
    assert.is_nil(ran)
  end)

  it("refuses what it cannot run with exit 2, the error and the usage line on stderr", function()
    local cases = {
      { { "move", "a" }, "chorus things move: needs TO\nusage: chorus things move FROM TO %[options%]\n" },
      { { "move", "a", "b", "c" }, "chorus things move: unexpected argument 'c'" },
      { { "move", "--nope" }, "chorus things move: unknown option %-%-nope" },
      { { "dance" }, "chorus things: unknown command 'dance' %(commands: list, move%)" },
      { { "list", "--limit" }, "chorus things list: option %-%-limit needs a value" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = capture(function() return group(c[1]) end)
      assert.equal(2, code, table.concat(c[1], " "))
      assert.equal("", out)
      assert.matches(c[2], err)
    end
    assert.is_nil(ran)
  end)

  it("makes a plain command with the same help and errors", function()
    local cmd = args.command({ name = "tail", args = "[WHAT] [options]", about = "Tail.", min = 0, max = 1,
      spec = { json = { type = "flag", help = "as JSON" } }, order = { "json" },
      run = function(opts, pos) ran = { opts, pos } return 0 end })
    assert.equal(0, (capture(function() return cmd({ "x", "--json" }) end)))
    assert.same({ { json = true }, { "x" } }, ran)
    local code, out = capture(function() return cmd({ "--help" }) end)
    assert.equal(0, code)
    assert.matches("^usage: chorus tail %[WHAT%] %[options%]\n\nTail%.", out)
    local err
    code, out, err = capture(function() return cmd({ "a", "b" }) end)
    assert.equal("", out)
    assert.equal(2, code)
    assert.matches("chorus tail: unexpected argument 'b'", err)
  end)
end)

describe("chorus.cli.diff", function()
  -- Applying the script to a gives b back, and it is as short as an LCS
  -- makes it (checked against a dynamic-programming LCS).
  local function lcs(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = 0 end
    for i = 1, #a do
      local cur = { [0] = 0 }
      for j = 1, #b do
        cur[j] = a[i] == b[j] and prev[j - 1] + 1 or math.max(prev[j], cur[j - 1])
      end
      prev = cur
    end
    return prev[#b]
  end

  local function check(a, b)
    local es = diff.edits(a, b)
    local ra, rb, changes = {}, {}, 0
    for _, e in ipairs(es) do
      if e.op ~= "+" then ra[#ra + 1] = e.text end
      if e.op ~= "-" then rb[#rb + 1] = e.text end
      if e.op ~= " " then changes = changes + 1 end
    end
    assert.same(a, ra)
    assert.same(b, rb)
    assert.equal(#a + #b - 2 * lcs(a, b), changes)
  end

  it("finds a shortest edit script", function()
    check({ "a", "b", "c", "a", "b", "b", "a" }, { "c", "b", "a", "b", "a", "c" })
    check({}, {})
    check({ "x" }, {})
    check({}, { "y" })
    check({ "same" }, { "same" })
    math.randomseed(7)
    for _ = 1, 500 do
      local a, b = {}, {}
      for i = 1, math.random(0, 15) do a[i] = string.char(96 + math.random(1, 3)) end
      for i = 1, math.random(0, 15) do b[i] = string.char(96 + math.random(1, 3)) end
      check(a, b)
    end
  end)

  it("prints hunks as diff -u does, and nothing for equal texts", function()
    local a, b = {}, {}
    for i = 1, 16 do a[i] = tostring(i) end
    for i = 1, 17 do b[i] = tostring(i) end
    b[4] = "four"
    assert.equal(table.concat({
      "--- old", "+++ new",
      "@@ -1,7 +1,7 @@", " 1", " 2", " 3", "-4", "+four", " 5", " 6", " 7",
      "@@ -14,3 +14,4 @@", " 14", " 15", " 16", "+17", "",
    }, "\n"), diff.unified(a, b, { from = "old", to = "new" }))
    assert.is_nil(diff.unified(a, a))
    assert.equal("--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n", diff.unified({}, { "x", "y" }))
    assert.equal("--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n", diff.unified({ "x" }, {}))
    assert.same({ "a", "", "b" }, diff.lines("a\n\nb\n"))
    assert.same({ "a", "b" }, diff.lines("a\nb"))
    assert.same({}, diff.lines(""))
  end)

  it("matches diff -u on a long change", function()
    local dir = h.tmpdir()
    local a, b = {}, {}
    math.randomseed(3)
    for i = 1, 300 do a[i] = "line " .. math.random(1, 40) end
    for i = 1, 300 do b[i] = a[i] end
    for _ = 1, 25 do b[math.random(1, 300)] = "changed " .. math.random(1, 1000) end
    table.insert(b, 10, "inserted")
    table.remove(b, 200)
    h.write(dir .. "/a", table.concat(a, "\n") .. "\n")
    h.write(dir .. "/b", table.concat(b, "\n") .. "\n")
    local mine = diff.unified(a, b, { from = "a", to = "b" })
    -- Both scripts are shortest; diff(1) may pick other equal lines, so
    -- compare what each removes and adds, and the hunk count.
    local _, out = h.sh(("diff -u %s/a %s/b | tail -n +3"):format(dir, dir))
    local function tally(text)
      local minus, plus, hunks = 0, 0, 0
      for line in text:gmatch("[^\n]+") do
        local c = line:sub(1, 1)
        if line:sub(1, 2) == "@@" then hunks = hunks + 1
        elseif c == "-" and line:sub(1, 3) ~= "---" then minus = minus + 1
        elseif c == "+" and line:sub(1, 3) ~= "+++" then plus = plus + 1 end
      end
      return minus, plus, hunks
    end
    local m1, p1 = tally(mine)
    local m2, p2 = tally(out)
    assert.equal(m2, m1)
    assert.equal(p2, p1)
  end)
end)

describe("chorus.json pretty", function()
  it("prints canonical JSON indented, one member a line", function()
    assert.equal('{\n  "a": [],\n  "b": {},\n  "c": [\n    1,\n    {\n      "x": "y"\n    }\n  ],\n  "z": null\n}',
      json.pretty({ z = json.null, c = { 1, { x = "y" } }, b = {}, a = json.array() }))
    assert.equal("1.5", json.pretty(1.5))
    assert.equal('"x"', json.pretty("x"))
    assert.same(json.decode('{"k":[1,2,{"m":true}]}'), json.decode(json.pretty(json.decode('{"k":[1,2,{"m":true}]}'))))
  end)
end)

describe("chorus.cli.render", function()
  it("writes times as RFC 3339 in UTC from epoch seconds or the API's text", function()
    assert.equal("2024-03-01T12:34:56Z", render.time(1709296496.789))
    assert.equal("2024-03-01T12:34:56Z", render.time("2024-03-01T12:34:56.789Z"))
    assert.equal("2024-03-01T12:34:56Z", render.time("2024-03-01T12:34:56+00:00"))
    assert.equal("-", render.time(nil))
    assert.equal("-", render.time(json.null))
  end)

  it("aligns columns and colours the status column only when asked", function()
    local f = io.tmpfile()
    render.table(f, { "A", "STATUS", "C" }, { { "xx", "completed", "1" }, { "y", nil, "22" } })
    f:seek("set")
    assert.equal("A   STATUS     C\nxx  completed  1\ny   -          22\n", f:read("*a"))
    f = io.tmpfile()
    render.table(f, { "A", "STATUS" }, { { "x", "failed" } }, { color = true, status_col = 2 })
    f:seek("set")
    assert.equal("A  STATUS\nx  \27[31mfailed\27[0m\n", f:read("*a"))
  end)

  it("drops JSON nulls from records", function()
    assert.same({ a = 1, b = { c = true } }, render.denull({ a = 1, x = json.null, b = { c = true, d = json.null } }))
  end)
end)

describe("server URLs and keys", function()
  it("normalizes a server URL, or says why not", function()
    assert.equal("http://h:1", remote.normalize("http://h:1/"))
    assert.equal("http://127.0.0.1:8080", remote.normalize("127.0.0.1:8080"))
    assert.equal("https://x.example/chorus", remote.normalize("https://x.example/chorus//"))
    local v, err = remote.normalize("ftp://x")
    assert.is_nil(v)
    assert.matches("ftp://x is not a server URL", err)
    assert.is_nil((remote.normalize("")))
  end)

  it("escapes path segments and query values", function()
    assert.equal("a%20b%2Fc%3F%25", remote.escape("a b/c?%"))
    assert.equal("Az09-._~", remote.escape("Az09-._~"))
  end)

  it("knows a well-formed key, and says what is wrong without quoting it", function()
    assert.is_true(auth.well_formed("chk_" .. ("0a"):rep(32)))
    assert.is_true(auth.well_formed((auth.generate())))
    for _, k in ipairs({ "chk_" .. ("0A"):rep(32), "chk_" .. ("0a"):rep(31), "xhk_" .. ("0a"):rep(32),
      "chk_" .. ("0g"):rep(32) }) do
      local ok, why = auth.well_formed(k)
      assert.is_nil(ok)
      assert.is_nil(why:find(k:sub(5), 1, true))
    end
  end)
end)
