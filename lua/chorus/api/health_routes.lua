-- /healthz (the process answers), /readyz (its dependencies answer),
-- /metrics (Prometheus text exposition). No authentication: they say
-- nothing about any tenant's data.
local api = require "chorus.api"

local M = {}

function M.register(app)
  app:route("GET", "/healthz", { auth = false }, function(ctx)
    return api.json(200, { status = "ok", node = ctx.service.node_id })
  end)

  app:route("GET", "/readyz", { auth = false }, function(ctx)
    local ready = ctx.service.ready
    local ok, checks = true, {}
    if ready then ok, checks = ready() end
    return api.json(ok and 200 or 503, { status = ok and "ready" or "not ready", checks = checks })
  end)

  app:route("GET", "/metrics", { auth = false }, function(ctx)
    local m = ctx.service.metrics
    local text = m and m:render() or ""
    return 200, { ["content-type"] = "text/plain; version=0.0.4" }, text
  end)
end

return M
