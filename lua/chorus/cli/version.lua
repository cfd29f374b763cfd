-- chorus version (also chorus --version, -V): the runtime's version, its
-- Lua VM and the LuaJIT branch it was built against. The library is found
-- at run time by its soname, which both branches share: when the one
-- loaded lacks luajit2's own modules, the line says so.
local native = require "chorus.native"

return function(argv)
  if argv[1] == "--help" or argv[1] == "-h" then
    io.stdout:write("usage: chorus version\n       chorus --version | -V\n\n"
      .. "Print the version of chorus, its Lua VM and the LuaJIT branch it was built against.\n\n"
      .. "exit codes: 0 ok, 2 bad usage\n")
    return 0
  end
  if argv[1] ~= nil then
    io.stderr:write(("chorus version: unexpected argument '%s'\nusage: chorus version\n"):format(argv[1]))
    return 2
  end
  local branch = native.luajit_branch
  if branch == "OpenResty luajit2" and not pcall(require, "table.isempty") then
    branch = branch .. " headers, but the library loaded is not luajit2"
  end
  io.stdout:write(("chorus %s (%s, %s)\n"):format(native.version, jit and jit.version or _VERSION, branch))
  return 0
end
