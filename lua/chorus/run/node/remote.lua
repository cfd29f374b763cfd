-- chorus.run.node.remote: controls across nodes. A control for an
-- execution this node runs is applied here (chorus.run.control); for one
-- another node runs (or nobody yet), it is checked against its row,
-- recorded (the pause and cancel flags a claim reads) and sent to its
-- node with NOTIFY chorus_control; the listen loop applies what others
-- sent here, and wakes the claim loop on NOTIFY chorus_work. Methods of
-- chorus.run.node.
local sched = require "chorus.sched"
local json = require "chorus.json"
local log = require "chorus.log"
local control = require "chorus.run.control"
local states = require "chorus.engine.states"

local Node = {}

-- Applies a control that arrived for an execution running here.
function Node:apply(msg)
  local exec = self.running[msg.id]
  if not exec or not control.ACTIONS[msg.action] then return end
  control.apply(exec, msg.action, { step_id = msg.step_id, reason = msg.reason, by = msg.by })
end

-- One connection listens; it is re-opened if lost.
function Node:listen_loop(url)
  local pg = require "chorus.db.pg"
  while not self.stopping do
    local conn, err = pg.connect(url)
    if conn then
      local ok = conn:listen("chorus_work") and conn:listen("chorus_control")
      while ok and not self.stopping do
        local n, why = conn:wait_notification(self.poll_ms)
        if n then
          if n.channel == "chorus_work" then
            self.wakeup:signal(true)
          else
            local msg = json.decode(n.payload)
            if type(msg) == "table" then self:apply(msg) end
          end
        elseif why ~= "timeout" then
          break
        end
      end
      conn:close()
    else
      log.warn("node: cannot listen for notifications: %s", tostring(err))
    end
    if not self.stopping and not sched.sleep(500) then return end
  end
end

-- control(key, action, args, scope): applied here when the execution runs
-- here; otherwise checked against its row, recorded (pause/cancel flags)
-- and sent to its node with NOTIFY chorus_control.
function Node:control(key, action, args, scope)
  local exec = self.store:get_execution(key)
  if exec and self.running[exec.id] then
    if not control.visible(exec, scope) then return nil, "no such execution", "not_found" end
    return control.apply(exec, action, args)
  end
  local rec, err = self.store:get_record(key, scope)
  if err then return nil, err end
  if not rec then return nil, "no such execution", "not_found" end
  local allowed = states.control[action]
  if allowed and not allowed[rec.status] then
    return nil, ("cannot %s an execution that is %s"):format(action, rec.status), "invalid_state"
  end
  if action == "resume" and rec.status ~= "paused" then
    return nil, "execution is not paused", "invalid_state"
  end
  if action == "approve" or action == "reject" then
    local waiting = false
    for _, s in ipairs(rec.steps) do
      if s.id == args.step_id and s.status == "paused" then waiting = true end
    end
    if not waiting then
      return nil, ("step %s is not awaiting approval"):format(tostring(args.step_id)), "invalid_state"
    end
  end
  if action == "cancel" then
    -- Nobody runs it yet: it ends here.
    local res = self.pool:query([[UPDATE orchestration_executions SET status = 'cancelled', active = false,
        error = 'cancelled', finished_at = now(), updated_at = now(), seq = seq + 1
      WHERE id = $1::uuid AND status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < now())]], rec.id)
    if res and res.affected == 1 then return true end
    self.pool:query("UPDATE orchestration_executions SET cancel_requested = true WHERE id = $1::uuid", rec.id)
  elseif action == "pause" or action == "resume" then
    self.pool:query("UPDATE orchestration_executions SET paused_by_user = $2 WHERE id = $1::uuid", rec.id, action == "pause")
  end
  local payload = json.encode({ id = rec.id, action = action, step_id = args.step_id, reason = args.reason, by = args.by })
  local ok, nerr = self.pool:query("SELECT pg_notify('chorus_control', $1)", payload)
  if not ok then return nil, nerr end
  return true
end

return Node
