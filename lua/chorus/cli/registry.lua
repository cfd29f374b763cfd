-- chorus registry [list] | reload: a server's loaded scripts (strategies,
-- agents, aggregators) with their versions and load errors; reload makes
-- it read its script directories again now (admins). Load errors make the
-- exit code 1, so a deployment can check its scripts loaded.
local args = require "chorus.cli.args"
local target = require "chorus.cli.target"
local render = require "chorus.cli.render"

local function say(cmd, msg)
  io.stderr:write(("chorus registry %s: %s\n"):format(cmd, msg))
end

local function connect(opts, bad)
  local t, err = target.resolve(opts, { what = "registry" })
  if not t then return nil, bad(err) end
  return t.remote
end

local function print_errors(errs)
  for _, e in ipairs(errs or {}) do
    io.stdout:write(("error  %s%s: %s\n"):format(tostring(e.file or e.name or "?"), e.line and (":" .. e.line) or "",
      tostring(e.message)))
  end
end

local function list(opts, _, bad)
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  local reg, err = r:call("GET", "/api/v1/registry")
  if not reg then say("list", err) return 1 end
  if opts.json then
    render.print_json(reg)
    return #(reg.errors or {}) > 0 and 1 or 0
  end
  reg = render.denull(reg)
  local rows = {}
  for _, kind in ipairs({ "strategies", "agents", "aggregators" }) do
    for _, e in ipairs(reg[kind] or {}) do
      rows[#rows + 1] = { kind:gsub("ies$", "y"):gsub("s$", ""), e.name, e.declared_version or "-", e.version or "-",
        e.file or "-" }
    end
  end
  render.table(io.stdout, { "KIND", "NAME", "DECLARED", "VERSION", "FILE" }, rows)
  print_errors(reg.errors)
  return #(reg.errors or {}) > 0 and 1 or 0
end

local function reload(opts, _, bad)
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  local res, err = r:call("POST", "/api/v1/registry/reload")
  if not res then say("reload", err) return 1 end
  if opts.json then
    render.print_json(res)
  else
    res = render.denull(res)
    io.stdout:write(("reloaded: generation %s, %d load error%s\n"):format(tostring(res.generation), #(res.errors or {}),
      #(res.errors or {}) == 1 and "" or "s"))
    print_errors(res.errors)
  end
  return #(res.errors or {}) > 0 and 1 or 0
end

local JSON = { type = "flag", help = "print the API's answer as JSON" }
local EXIT = "exit codes: 0 ok, 1 failed or a script has a load error, 2 bad usage"

return args.group({
  name = "registry",
  about = "The scripts a server has loaded (strategies, agents, aggregators), and reloading them.",
  common = { server = target.SERVER, json = JSON }, common_order = { "server", "json" },
  footer = target.SERVER_FOOTER,
  commands = {
    { name = "list", args = "[options]", about = "Every loaded script with its versions, then load errors.", run = list,
      default = true, exit_codes = EXIT },
    { name = "reload", args = "[options]", about = "Reload the scripts now (admins; SIGHUP does the same).", run = reload,
      exit_codes = EXIT },
  },
})
