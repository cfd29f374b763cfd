-- chorus.run.control: a control applied to a live execution, one
-- dispatch for every runner (the in-memory runner for the API, a node for
-- the API and for controls another node sent it).
--
--   apply(exec, action, args) -> true | nil, err, "invalid_state"
--     action: pause | resume | cancel | approve | reject; args: {step_id,
--     reason, by} for approve and reject
--   visible(exec, scope) -> boolean: scope (the API principal's) sees it:
--     admins see all; others the executions they started in their tenant
local M = {}

M.ACTIONS = { pause = true, resume = true, cancel = true, approve = true, reject = true }

function M.apply(exec, action, args)
  args = args or {}
  local ok, err
  if action == "pause" then ok, err = exec:pause()
  elseif action == "resume" then ok, err = exec:resume()
  elseif action == "cancel" then ok, err = exec:cancel()
  elseif action == "approve" then ok, err = exec:approve(args.step_id, args.by)
  elseif action == "reject" then ok, err = exec:reject(args.step_id, args.reason, args.by)
  else error("unknown control " .. tostring(action)) end
  if not ok then return nil, err, "invalid_state" end
  return true
end

function M.visible(exec, scope)
  if not scope or scope.admin then return true end
  return exec.tenant_id == scope.tenant_id and exec.user_id == scope.user_id
end

return M
