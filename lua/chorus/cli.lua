-- chorus.cli: the command line. Each command lives in chorus/cli/NAME.lua
-- and returns a function(args) -> exit code.
local M = {}

local COMMANDS = {
  run = "run an orchestration config (in memory by default)",
  serve = "the HTTP/WebSocket server: REST API, live events, metrics",
  validate = "check configs and report every error",
  test = "run the busted specs inside the runtime",
  version = "print the version",
  lua = "run a Lua file inside the runtime (benchmarks, scripts)",
  migrate = "apply the database migrations (up, status, down N)",
  enqueue = "write a pending execution to the database, print its trace id",
  worker = "run a node that claims and runs executions from the database",
  status = "print an execution's record from the database",
  keys = "create, list and revoke API keys",
  kb = "load a directory into the knowledge base (import) or search it",
  executions = "list, show and control executions (of a server, or in the database)",
  configs = "list, show, apply and diff a server's configs",
  registry = "a server's loaded scripts and their load errors; reload them",
  events = "follow a server's events live, like tail -f",
}
local ORDER = { "run", "validate", "serve", "worker", "executions", "configs", "events", "registry", "migrate", "enqueue",
  "status", "keys", "kb", "test", "lua", "version" }

local function usage(out)
  out:write("usage: chorus COMMAND [ARGS]\n       chorus --version\n\ncommands:\n")
  for _, name in ipairs(ORDER) do
    out:write(("  %-11s %s\n"):format(name, COMMANDS[name]))
  end
  out:write("\nchorus COMMAND --help (or chorus help COMMAND) shows a command's usage.\n"
    .. "Exit codes: 0 ok, 1 failed, 2 bad usage (each command's help says more).\n")
end

function M.main(argv)
  local cmd = argv[1]
  if cmd == "--version" or cmd == "-V" then cmd = "version" end
  if cmd == "help" and argv[2] then
    if COMMANDS[argv[2]] then return require("chorus.cli." .. argv[2])({ "--help" }) end
    cmd = argv[2]
  end
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    usage(cmd and io.stdout or io.stderr)
    return cmd and 0 or 2
  end
  if not COMMANDS[cmd] then
    io.stderr:write(("chorus: unknown command '%s'\n\n"):format(cmd))
    usage(io.stderr)
    return 2
  end
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end
  return require("chorus.cli." .. cmd)(args)
end

return M
