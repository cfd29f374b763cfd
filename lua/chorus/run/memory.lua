-- chorus.run.memory: starts executions for the API and applies controls to
-- them. This is the in-process runner used with the memory store: an
-- execution starts at once in a detached task of this process. (With
-- PostgreSQL, chorus.run.node's runner writes the execution durably first and
-- any node may claim it.)
--
--   submit(cfg, input, opts) -> summary | nil, err, code ("invalid_input":
--     the input breaks the config's limits, err says how; "busy": the
--     node runs max_inflight executions already)
--     opts: config_id, config_version, user_id, tenant_id, trace_id,
--     idempotency_key (a retried submit with the same key and tenant
--     returns the first execution, with replayed = true)
--   control(key, action, args, scope) -> true | nil, err, code
--     action: pause | resume | cancel | approve | reject
--     code: "not_found" (or not visible in scope), "invalid_state"
--   stop({grace_ms}), close()
local limits = require "chorus.engine.limits"
local sched = require "chorus.sched"
local control = require "chorus.run.control"

local M = {}

local Runner = {}
Runner.__index = Runner

-- max_inflight: executions running in this process at most; a submit
-- past it is refused (code "busy": the API answers 429 with Retry-After)
-- rather than let one client fill the memory.
M.DEFAULT_MAX_INFLIGHT = 10000

function M.new(opts)
  local self = setmetatable({ engine = opts.engine, store = opts.engine.store, idem = {}, idem_n = 0,
    max_idem = opts.max_idempotency_keys or 100000, inflight = 0,
    max_inflight = opts.max_inflight or M.DEFAULT_MAX_INFLIGHT }, Runner)
  -- An execution that ends: its webhooks go out (opts.on_end, the
  -- server's local deliverer), and it leaves the count.
  local on_end = opts.on_end
  self.untrack = function(exec)
    self.inflight = self.inflight - 1
    if on_end then on_end(exec) end
  end
  return self
end

local function summary(exec, replayed)
  return { execution_id = exec.id, trace_id = exec.trace_id, status = exec.status, replayed = replayed or nil }
end

function Runner:submit(cfg, input, opts)
  opts = opts or {}
  local bytes
  input, bytes = limits.check_input(input, cfg.settings)
  if not input then return nil, bytes, "invalid_input" end
  if self.inflight >= self.max_inflight then
    return nil, ("%d executions in flight on this node, its maximum; retry later"):format(self.inflight), "busy"
  end
  local ikey
  if opts.idempotency_key then
    -- A key is the user's own: another user of the tenant reusing it
    -- starts an execution of their own.
    ikey = (opts.tenant_id or "") .. "\0" .. (opts.user_id or "") .. "\0" .. opts.idempotency_key
    local id = self.idem[ikey]
    local exec = id and self.store:get_execution(id)
    if exec then return summary(exec, true) end
  end
  local exec = self.engine:execute(cfg, input, {
    detached = true, config_id = opts.config_id, config_version = opts.config_version,
    user_id = opts.user_id, tenant_id = opts.tenant_id, trace_id = opts.trace_id, input_bytes = bytes,
    callback_url = opts.callback_url, session_id = opts.session_id, metadata = opts.metadata,
  })
  if not exec.finalized then
    self.inflight = self.inflight + 1
    exec.on_end = self.untrack
  end
  if ikey then
    -- Bounded: the oldest keys are forgotten first (the memory store
    -- forgets old executions the same way).
    if self.idem_n >= self.max_idem then self.idem, self.idem_n = {}, 0 end
    self.idem[ikey] = exec.id
    self.idem_n = self.idem_n + 1
  end
  return summary(exec)
end

function Runner:control(key, action, args, scope)
  local exec = self.store:get_execution(key)
  if not exec or not control.visible(exec, scope) then return nil, "no such execution", "not_found" end
  return control.apply(exec, action, args)
end

-- stop({grace_ms}): executions still running get grace_ms (10000) to
-- end, then are cancelled (memory executions cannot outlive the process).
function Runner:stop(opts)
  local deadline = sched.now() + (opts and opts.grace_ms or 10000)
  while self.inflight > 0 and sched.now() < deadline do sched.sleep(20) end
  self:close()
end

-- close(): cancels what still runs and waits until it ended.
function Runner:close()
  local live = {}
  for _, exec in pairs(self.store.by_id) do
    if not exec.finalized then
      exec:cancel()
      live[#live + 1] = exec
    end
  end
  for _, exec in ipairs(live) do exec:wait() end
end

return M
