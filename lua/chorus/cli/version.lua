-- chorus version: the runtime's version, its Lua VM and the LuaJIT branch
-- it was built against. The library is found at run time by its soname,
-- which both branches share: when the one loaded lacks luajit2's own
-- modules, the line says so.
local native = require "chorus.native"

return function()
  local branch = native.luajit_branch
  if branch == "OpenResty luajit2" and not pcall(require, "table.isempty") then
    branch = branch .. " headers, but the library loaded is not luajit2"
  end
  io.stdout:write(("chorus %s (%s, %s)\n"):format(native.version, jit and jit.version or _VERSION, branch))
  return 0
end
