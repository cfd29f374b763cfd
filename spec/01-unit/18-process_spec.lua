-- native.spawn_process: child processes through libuv (no shell), the
-- binding `serve --workers` supervises its workers with: exit codes and
-- signals, kill, a program that cannot run, cancel and timeout of a wait,
-- environment, working directory and stdio, and no zombies left behind.
local native = require "chorus.native"
local sched = require "chorus.sched"
local h = require "spec.helpers"

-- Every child a spec starts, killed after it (a failed check must not
-- leave a `sleep 30` behind); kill on an exited child is refused, harmless.
local started = {}
local function spawn(argv, opts)
  local p, err = native.spawn_process(argv, opts)
  if p then started[#started + 1] = p end
  return p, err
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The state letter of pid in /proc ("S", "Z"...), nil once it is gone.
local function proc_state(pid)
  local st = slurp(("/proc/%d/stat"):format(pid))
  return st and st:match("^%d+ %b() (%a)")
end

describe("native.spawn_process", function()
  local tmp
  before_each(function() tmp = os.tmpname() end)
  after_each(function()
    os.remove(tmp)
    for _, p in ipairs(started) do p:kill("KILL") end
    started = {}
  end)

  it("returns the exit code of the child", function()
    local p = assert(spawn({ "sh", "-c", "exit 7" }))
    assert.is_true(p:pid() > 0)
    assert.same({ 7, nil }, { p:wait() })
    -- Waiting again returns the same at once.
    assert.same({ 7, nil }, { p:wait() })
    assert.same({ 0, nil }, { assert(spawn({ "true" })):wait() })
  end)

  it("says which signal killed the child, as 128 + its number and its name", function()
    local p = assert(spawn({ "sh", "-c", "kill -KILL $$" }))
    assert.same({ 137, "SIGKILL" }, { p:wait() })
  end)

  it("kill sends SIGTERM by default, or the signal named or numbered", function()
    local p = assert(spawn({ "sleep", "30" }))
    assert.is_truthy(proc_state(p:pid()) ~= nil and proc_state(p:pid()) ~= "Z")
    assert.is_true(p:kill())
    assert.same({ 143, "SIGTERM" }, { p:wait() })
    -- Once it exited its pid may be another process's: refused.
    assert.same({ nil, "exited" }, { p:kill() })

    local q = assert(spawn({ "sleep", "30" }))
    assert.is_true(q:kill("USR1"))
    assert.same({ 138, "SIGUSR1" }, { q:wait() })
    local r = assert(spawn({ "sleep", "30" }))
    assert.is_true(r:kill(9))
    assert.same({ 137, "SIGKILL" }, { r:wait() })
    local s = assert(spawn({ "sleep", "30" }))
    assert.has_error(function() s:kill("SIGNOPE") end)
    assert.is_true(s:kill("SIGHUP"))
    assert.same({ 129, "SIGHUP" }, { s:wait() })
  end)

  it("says which program cannot be run, and why", function()
    local p, err = spawn({ "/nonexistent/chorus-spec-program", "x" })
    assert.is_nil(p)
    assert.equal("cannot run '/nonexistent/chorus-spec-program': no such file or directory", err)
    -- Looked up in PATH when the name has no slash.
    p, err = spawn({ "chorus-spec-no-such-program" })
    assert.is_nil(p)
    assert.equal("cannot run 'chorus-spec-no-such-program': no such file or directory", err)
    -- A file that is not executable.
    assert(io.open(tmp, "w")):close()
    p, err = spawn({ tmp })
    assert.is_nil(p)
    assert.equal(("cannot run '%s': permission denied"):format(tmp), err)
    -- A working directory that does not exist.
    p, err = spawn({ "true" }, { cwd = "/nonexistent/dir" })
    assert.is_nil(p)
    assert.equal("cannot run 'true' in /nonexistent/dir: no such file or directory", err)
  end)

  it("a cancelled wait returns at once and leaves the child running", function()
    local p = assert(spawn({ "sleep", "30" }))
    local t0 = sched.now()
    local seen
    local waiter = sched.spawn(function() seen = { p:wait() } end)
    sched.sleep(20)
    waiter:cancel()
    assert.same({ nil, "cancelled" }, { waiter:join() })
    assert.same({ nil, "cancelled" }, seen)
    assert.is_true(sched.now() - t0 < 1000)
    assert.equal("S", proc_state(p:pid()))
    -- A later wait still sees the exit.
    p:kill("KILL")
    assert.same({ 137, "SIGKILL" }, { p:wait() })
  end)

  it("a wait under a deadline times out; two waiters: the second is told busy", function()
    local p = assert(spawn({ "sleep", "30" }))
    assert.same({ nil, "timeout" }, { sched.with_deadline(30, function() return p:wait() end) })
    local first = sched.spawn(function() return p:wait() end)
    sched.sleep(5)
    assert.same({ nil, "busy" }, { p:wait() })
    p:kill()
    assert.same({ true, 143, "SIGTERM" }, { first:join() })
  end)

  it("passes the environment on, with variables set or removed, or only those given", function()
    -- A variable this process inherited (sh sets PATH, PWD... itself).
    local inherited
    for entry in (slurp("/proc/self/environ") or ""):gmatch("[^%z]+") do
      local name = entry:match("^([%w_]+)=")
      if name and not ({ PATH = 1, PWD = 1, OLDPWD = 1, SHLVL = 1, _ = 1, IFS = 1 })[name] then inherited = name break end
    end
    assert(inherited, "no inherited variable to check")
    local script = ('printf "%%s|%%s|%%s" "$CHORUS_SPEC_A" "${CHORUS_SPEC_B-unset}" "${%s+inherited}" >"$1"'):format(inherited)
    local p = assert(spawn({ "sh", "-c", script, "sh", tmp }, { env = { CHORUS_SPEC_A = "a b=c" } }))
    assert.same({ 0, nil }, { p:wait() })
    assert.equal("a b=c|unset|inherited", slurp(tmp))
    -- false removes an inherited variable.
    p = assert(spawn({ "sh", "-c", script, "sh", tmp }, { env = { [inherited] = false, CHORUS_SPEC_B = "b" } }))
    assert.same({ 0, nil }, { p:wait() })
    assert.equal("|b|", slurp(tmp))
    p = assert(spawn({ "/usr/bin/env" }, { clear_env = true, env = { ONLY = "1" }, stdout = "null" }))
    assert.same({ 0, nil }, { p:wait() })
    p = assert(spawn({ "/bin/sh", "-c", "env >" .. tmp }, { clear_env = true, env = { ONLY = "1" } }))
    assert.same({ 0, nil }, { p:wait() })
    local names = {}
    for name in slurp(tmp):gmatch("([%w_]+)=") do names[#names + 1] = name end
    table.sort(names)
    -- sh itself adds PWD (and may add SHLVL); nothing was inherited.
    for _, n in ipairs(names) do
      assert.is_truthy(n == "ONLY" or n == "PWD" or n == "SHLVL" or n == "_", n)
    end
    assert.is_truthy(slurp(tmp):match("ONLY=1"))
  end)

  it("runs in the working directory given, with stdin from /dev/null when asked", function()
    local p = assert(spawn({ "sh", "-c", 'pwd >"$1"', "sh", tmp }, { cwd = "/usr/share" }))
    assert.same({ 0, nil }, { p:wait() })
    assert.equal("/usr/share\n", slurp(tmp))
    -- cat would wait on the test's own stdin forever without "null".
    p = assert(spawn({ "sh", "-c", 'cat >"$1"', "sh", tmp }, { stdin = "null" }))
    assert.same({ 0, nil }, { p:wait() })
    assert.equal("", slurp(tmp))
  end)

  it("reaps a child nobody keeps or waits for: no zombie", function()
    local pid = assert(native.spawn_process({ "sleep", "0.05" })):pid()
    collectgarbage()
    collectgarbage()
    assert.is_true(h.wait_until(function() return proc_state(pid) == nil end, 5000),
      "child " .. pid .. " left in state " .. tostring(proc_state(pid)))
  end)

  it("refuses bad arguments with an error that says which", function()
    local cases = {
      { {}, nil, "argv must name the program" },
      { { "true", 5 }, nil, "each argv entry must be a string" },
      { { "tr\0ue" }, nil, "contains a NUL byte" },
      { { "true" }, { stdout = "pipe" }, 'opts.stdout must be "inherit" or "null"' },
      { { "true" }, { env = { ["A=B"] = "x" } }, "env name 'A=B' is not a variable name" },
      { { "true" }, { env = { A = 1 } }, "each env value must be a string" },
      { { "true" }, { env = "A=1" }, "opts.env must be a table" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(spawn, c[1], c[2])
      assert.is_false(ok)
      assert.matches(c[3], err, 1, true)
    end
  end)

  it("exepath is the running binary", function()
    local exe = assert(native.exepath())
    local f = assert(io.popen("readlink -f " .. h.binary))
    local want = f:read("*l")
    f:close()
    assert.equal(want, exe)
  end)
end)
