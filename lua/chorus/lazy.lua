-- chorus.lazy: a module required when first used, not when the file
-- that names it is loaded. The built-in agents name their adapters'
-- modules this way: a node loads every agent at start, and modules no
-- execution calls would sit in the heap every collection cycle walks
-- (the HTTP, model, Workload Scheduler and knowledge-base code is a
-- quarter of an engine's live heap).
--
--   local chat = lazy "chorus.llm.chat"   -- nothing loaded yet
--   chat.complete(...)                    -- required now, then as the module
--
-- The first field read requires the module; from then on fields are
-- read through the module (the proxy's metatable indexes it). A module
-- that fails to load raises where it is first used, as require would.
local require, setmetatable = require, setmetatable

return function(name)
  local proxy = {}
  return setmetatable(proxy, {
    __index = function(_, k)
      local m = require(name)
      setmetatable(proxy, { __index = m, __newindex = m })
      return m[k]
    end,
    __newindex = function(_, k, v)
      local m = require(name)
      setmetatable(proxy, { __index = m, __newindex = m })
      m[k] = v
    end,
  })
end
