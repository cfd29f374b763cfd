-- The overview numbers of the admin page, from the store's own data (no
-- second metrics stack): executions by status (in all and per minute),
-- finished steps' latency by agent (p50/p99), tokens and cost by config.
--   GET /api/v1/stats?window=SECONDS   (60..86400, default 3600)
-- A caller sees the numbers of the executions it may see: its own, or
-- (admins) everyone's, narrowed with ?tenant_id= and ?user_id=.
local api = require "chorus.api"
local errors = require "chorus.api.errors"
local present = require "chorus.api.present"
local stats = require "chorus.store.stats"

local M = {}

function M.register(app)
  app:route("GET", "/api/v1/stats", { auth = "read" }, function(ctx)
    local q, p = ctx.query, ctx.principal
    local window, s, h, b = api.int_param(q, "window", 3600, 60, stats.MAX_WINDOW_S)
    if not window then return s, h, b end
    local filter = { window_s = window }
    if p.admin then
      filter.tenant_id, filter.user_id = q.tenant_id, q.user_id
    else
      filter.tenant_id, filter.user_id = p.tenant_id, p.user_id
    end
    local res, err = ctx.service.store:stats(filter)
    if not res then return errors.response("unavailable", "cannot read the stats: " .. tostring(err)) end
    return api.json(200, present.stats(res))
  end)
end

return M
