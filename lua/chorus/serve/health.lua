-- chorus.serve.health: readiness of a `chorus serve` process (GET
-- /readyz): its database answers, its Redis bridge is connected, and it
-- is not shutting down.
--
--   ready(svc, server) -> function() -> ok, checks
local M = {}

function M.ready(svc, server)
  return function()
    local checks, ok = {}, true
    if svc.pool then
      local r, perr = svc.pool:query("SELECT 1")
      checks.database = r and "ok" or tostring(perr)
      ok = ok and r ~= nil
    end
    if svc.bridge then
      local c = svc.bridge:connected()
      checks.redis = c and "ok" or "disconnected"
      ok = ok and c
    end
    if server.stopping then
      checks.shutdown = "in progress"
      ok = false
    end
    return ok, checks
  end
end

return M
