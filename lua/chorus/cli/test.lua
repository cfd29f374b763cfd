-- chorus test [BUSTED ARGS] [DIR...]: busted inside the runtime, so specs
-- can use the real bindings and yield to the loop. Must stay a file chunk:
-- busted's runner only keeps the host in control (no os.exit) when it is
-- called from a file.
return function(args)
  local argv = { [0] = "busted" }
  local has_output, has_helper = false, false
  for _, a in ipairs(args) do
    if a == "-o" or a:match("^%-%-output") then has_output = true end
    if a:match("^%-%-helper") then has_helper = true end
  end
  if not has_output then
    argv[#argv + 1] = "-o"
    argv[#argv + 1] = "plainTerminal"
  end
  -- A spec that logs an error it does not expect fails (the guard).
  if not has_helper then
    argv[#argv + 1] = "--helper=" .. require("chorus.native").home .. "/spec/support/log_guard.lua"
  end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  if #args == 0 or args[#args]:sub(1, 1) == "-" then argv[#argv + 1] = "spec" end
  -- Specs provoke warnings on purpose (broken scripts, failing agents);
  -- show only errors unless CHORUS_LOG_LEVEL (or CHORUS_LOG) asks for more.
  if not os.getenv("CHORUS_LOG") and not os.getenv("CHORUS_LOG_LEVEL") then require("chorus.log").set_level("error") end
  _G.arg = argv
  local ok = pcall(require("busted.runner"), { standalone = false })
  -- busted raises a nil error when specs failed (Lua 5.1 path).
  return ok and 0 or 1
end
