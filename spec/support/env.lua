-- spec/support/env.lua: set and restore process environment variables in
-- specs (agents read their endpoints and secrets with os.getenv).
--
--   local env = require "spec.support.env"  -- or dofile
--   local restore = env.set({ TWS_URL = url, TWS_PASSWORD = false })  -- false unsets
--   restore()
local ffi = require "ffi"

pcall(ffi.cdef, [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]])

local M = {}

local function put(name, value)
  if value == nil or value == false then
    ffi.C.unsetenv(name)
  else
    assert(ffi.C.setenv(name, tostring(value), 1) == 0, "setenv " .. name)
  end
end

-- set(vars) -> restore(): vars maps names to values (false: unset).
function M.set(vars)
  local old = {}
  for name, value in pairs(vars) do
    old[name] = os.getenv(name) or false
    put(name, value)
  end
  return function()
    for name, value in pairs(old) do put(name, value) end
  end
end

return M
