-- chorus lua FILE [ARGS...]: runs a Lua file inside the runtime, as a task,
-- with the real bindings (benchmarks, maintenance scripts). The file's
-- chunk receives ARGS as `...`; a number it returns is the exit code.
local USAGE = "usage: chorus lua FILE [ARGS...]\n"

return function(argv)
  local path = argv[1]
  if path == "--help" or path == "-h" then
    io.stdout:write(USAGE .. "\nRun a Lua file inside the runtime, as a task with the real bindings (benchmarks,\n"
      .. "maintenance scripts). The file's chunk receives ARGS as `...`; a number it returns is the exit code.\n"
      .. "\nexit codes: what the file returns (0 if nothing), 2 when it cannot be loaded\n")
    return 0
  end
  if not path then
    io.stderr:write(USAGE)
    return 2
  end
  local chunk, err = loadfile(path)
  if not chunk then
    io.stderr:write("chorus lua: " .. tostring(err) .. "\n")
    return 2
  end
  local rest = {}
  for i = 2, #argv do rest[#rest + 1] = argv[i] end
  local code = chunk(unpack(rest))
  return type(code) == "number" and code or 0
end
