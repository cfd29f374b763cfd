-- The binary's help as a user meets it: every command (and subcommand)
-- prints its usage on stdout with --help, -h and `chorus help COMMAND`,
-- and exits 0; each usage says its exit codes; --version and -V; a bad
-- option or command is exit 2 with the usage on stderr. Then colour
-- (NO_COLOR) and where `chorus run` puts its answer.
local h = require "spec.helpers"
local json = require "chorus.json"

local function chorus(args, env)
  return h.sh(("cd %s && env -u NO_COLOR %s %s %s"):format(h.root, env or "", h.binary, args))
end

-- commands(text) -> the names listed under "commands:" in a usage text
local function commands(text)
  local block = text:match("\ncommands:\n(.-)\n\n") or text:match("\ncommands:\n(.*)$")
  local out = {}
  for line in ((block or "") .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^  (%l[%l%-]*)")
    if name then out[#out + 1] = name end
  end
  return out
end

describe("chorus --help", function()
  local top
  setup(function()
    local code, out, err = chorus("--help")
    assert.equal(0, code, err)
    top = out
  end)

  it("lists every command, and each prints its usage on stdout, exit 0", function()
    local names = commands(top)
    assert.is_true(#names >= 16, top)
    for _, name in ipairs(names) do
      for _, form in ipairs({ name .. " --help", name .. " -h", "help " .. name }) do
        local code, out, err = chorus(form)
        assert.equal(0, code, form .. ": " .. err)
        assert.equal("", err, form)
        assert.matches("^usage: chorus " .. name:gsub("%-", "%%-"), out, nil, form)
        assert.matches("exit codes:", out, 1, true)
      end
    end
  end)

  it("prints each subcommand's usage of the commands made of them", function()
    for _, group in ipairs({ "executions", "configs", "registry" }) do
      local _, gout = chorus(group .. " --help")
      local subs = commands(gout)
      assert.is_true(#subs >= 2, gout)
      for _, sub in ipairs(subs) do
        local code, out, err = chorus(("%s %s --help"):format(group, sub))
        assert.equal(0, code, err)
        assert.equal("", err)
        assert.matches(("^usage: chorus %s %s"):format(group, sub), out)
        assert.matches("exit codes", out, 1, true)
      end
    end
  end)

  it("docs/cli.md has a section for every command naming each of its options", function()
    local f = assert(io.open(h.root .. "/docs/cli.md"))
    local doc = f:read("*a")
    f:close()
    local function section(name)
      local at = doc:find("\n## [^\n]*`chorus " .. name .. "`")
      assert(at, "docs/cli.md has no section for chorus " .. name)
      local stop = doc:find("\n## ", at + 1) or #doc
      return doc:sub(at, stop)
    end
    local function check(name, help_args)
      local text = section(name)
      local _, out = chorus(help_args .. " --help")
      for opt in out:gmatch("%-%-[%w%-]+") do
        if opt ~= "--help" then
          assert(text:find(opt, 1, true), ("docs/cli.md's chorus %s section lacks %s"):format(name, opt))
        end
      end
    end
    for _, name in ipairs(commands(top)) do check(name, name) end
    for _, group in ipairs({ "executions", "configs", "registry" }) do
      local _, gout = chorus(group .. " --help")
      for _, sub in ipairs(commands(gout)) do check(group, group .. " " .. sub) end
    end
  end)

  it("--version and -V print the version", function()
    local _, v = chorus("version")
    assert.matches("^chorus %d+%.%d+%.%d+ %(", v)
    for _, form in ipairs({ "--version", "-V" }) do
      local code, out = chorus(form)
      assert.equal(0, code)
      assert.equal(v, out)
    end
  end)

  it("answers a bad command line with exit 2 and the usage on stderr", function()
    for _, args in ipairs({ "", "nope", "help nope", "executions --bogus", "executions show", "executions nope",
      "configs apply", "events a b", "registry reload extra", "serve --nope", "version extra",
      "executions list --limit 5000", "executions show not-a-uuid", "events not-a-uuid" }) do
      local code, out, err = chorus(args)
      assert.equal(2, code, args)
      assert.equal("", out, args)
      assert.matches("usage", err:lower(), 1, true)
    end
  end)

  it("refuses --server with --db, and --db where a server is needed", function()
    local code, _, err = chorus("executions list --server http://127.0.0.1:1 --db postgresql://x@127.0.0.1:1/y")
    assert.equal(2, code)
    assert.matches("give either --server or --db, not both", err, 1, true)
    code, _, err = chorus("configs list --db postgresql://x@127.0.0.1:1/y")
    assert.equal(2, code)
    assert.matches("unknown option --db", err, 1, true)
  end)
end)

describe("chorus run's output", function()
  local cfg
  setup(function()
    local dir = h.tmpdir()
    cfg = dir .. "/c.json"
    h.write(cfg, json.encode({ name = "out", strategy = "sequential", steps = {
      { id = "a", agent = "echo", params = { output = { answer = ("x"):rep(900) } } } } }))
  end)

  it("puts the summary and the whole output on stdout, progress on stderr", function()
    local code, out, err = chorus("run " .. cfg)
    assert.equal(0, code, err)
    assert.matches("^out completed in", out)
    assert.matches(('"answer": "%s"'):format(("x"):rep(900)), out, 1, true) -- whole, not a preview
    assert.not_matches("running", out)
    assert.matches("execution running", err, 1, true)
    assert.not_matches("output:", err, 1, true)
  end)

  it("-q keeps the answer and drops the progress", function()
    local code, out, err = chorus("run -q " .. cfg)
    assert.equal(0, code)
    assert.matches("^out completed in", out)
    assert.not_matches("%] execution running", err) -- the log's own lines may be there
  end)

  it("--json puts only the record on stdout", function()
    local code, out, err = chorus("run --json " .. cfg)
    assert.equal(0, code)
    assert.equal(("x"):rep(900), json.decode(out).output.answer)
    assert.matches("out completed in", err, 1, true)
  end)

  -- script(1) gives the command a terminal; colour only there, and never
  -- with NO_COLOR set (to anything but "").
  it("colours a terminal's output unless NO_COLOR is set", function()
    if os.execute("command -v script >/dev/null 2>&1") ~= 0 then
      pending("script(1) is not installed")
      return
    end
    local function on_tty(env)
      local _, out = h.sh(("cd %s && env -u NO_COLOR %s script -qec %s /dev/null"):format(h.root, env,
        ("'%s run %s'"):format(h.binary, cfg)))
      return out
    end
    assert.matches("\27[32m", on_tty(""), 1, true)
    assert.not_matches("\27[", on_tty("NO_COLOR=1"), 1, true)
    assert.matches("\27[32m", on_tty("NO_COLOR="), 1, true)
    assert.not_matches("\27[", on_tty("TERM=dumb"), 1, true)
    -- Not a terminal: no colour either (the specs' own runs above).
    local _, out, err = chorus("run " .. cfg)
    assert.not_matches("\27[", out .. err, 1, true)
  end)
end)
