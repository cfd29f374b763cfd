-- chorus version: the runtime's version and its Lua VM.
local native = require "chorus.native"

return function()
  io.stdout:write(("chorus %s (%s)\n"):format(native.version, jit and jit.version or _VERSION))
  return 0
end
