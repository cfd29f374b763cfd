-- chorus.run.node.submit: a node as the API's runner (the interface of
-- chorus.run.service): admission against the cluster's backlog, and a
-- submit written durably before it is answered. Methods of
-- chorus.run.node.
local sched = require "chorus.sched"
local native = require "chorus.native"
local execution = require "chorus.engine.execution"
local pgstore = require "chorus.store.pg"
local limits = require "chorus.engine.limits"

local Node = {}

local function summary(exec, replayed)
  return { execution_id = exec.id, trace_id = exec.trace_id, status = exec.status, replayed = replayed or nil }
end

-- admit() -> true | nil, err, "busy": a submit is taken while this node
-- has room to run it, or while the cluster's backlog of pending
-- executions is under max_pending (counted at most once a second, the
-- count itself bounded): past it, clients are told to come back (429)
-- rather than fill the database faster than the nodes drain it.
function Node:admit()
  if self.nrunning < self.concurrency and not self.stopping then return true end
  local now = sched.now()
  if not self.pending_at or now - self.pending_at >= 1000 then
    local r = self.pool:query([[SELECT count(*) AS n FROM (SELECT 1 FROM orchestration_executions
      WHERE active AND status = 'pending' LIMIT $1) q]], self.max_pending + 1)
    if r then self.pending_n, self.pending_at = r.rows[1].n, now end
  end
  if (self.pending_n or 0) >= self.max_pending then
    return nil, ("%d executions are waiting for a node, the most allowed; retry later"):format(self.pending_n), "busy"
  end
  self.pending_n = (self.pending_n or 0) + 1
  return true
end

-- submit(cfg, input, opts) -> summary, exec (when started here) | nil,
-- err, code. Written durably
-- before it returns; started here at once when this node has room,
-- otherwise left pending for any node (NOTIFY chorus_work).
function Node:submit(cfg, input, opts)
  opts = opts or {}
  local bytes
  input, bytes = limits.check_input(input, cfg.settings)
  if not input then return nil, bytes, "invalid_input" end
  local admitted, why, code = self:admit()
  if not admitted then return nil, why, code end
  local exec = execution.new({
    config = cfg, input = input, registry = self.engine.registry:snapshot(), store = self.store,
    bus = self.engine.bus, config_id = opts.config_id, config_version = opts.config_version,
    user_id = opts.user_id, tenant_id = opts.tenant_id, auto_approve = opts.auto_approve,
    trace_id = opts.trace_id, input_bytes = bytes, callback_url = opts.callback_url,
    session_id = opts.session_id, metadata = opts.metadata,
  })
  local here = not self.stopping and self.nrunning < self.concurrency
  local claim = here and { node_id = self.node_id, claim_token = native.uuid(), lease_ms = self.lease_ms } or {}
  claim.idempotency_key, claim.priority = opts.idempotency_key, opts.priority
  local records = pgstore.insert_records(self.store, exec, claim)
  if opts.idempotency_key then
    -- Sent directly, to learn whether the key was new.
    local writes = require "chorus.store.pg_writes"
    local plan = writes.build(records)
    local res, err = self.pool:batch(plan.stmts)
    if not res then return nil, err end
    if writes.insert_refused(plan, res, exec.id) then
      local prev, perr = self.pool:query([[SELECT id::text, trace_id::text, status FROM orchestration_executions
        WHERE coalesce(tenant_id, '') = coalesce($1, '') AND coalesce(user_id, '') = coalesce($3, '')
          AND idempotency_key = $2]], opts.tenant_id, opts.idempotency_key, opts.user_id)
      if not prev then return nil, perr end
      local p = prev.rows[1]
      if not p then return nil, "conflicting execution id", "conflict" end
      return { execution_id = p.id, trace_id = p.trace_id, status = p.status, replayed = true }
    end
    exec.persisted = true
    if here then
      exec.claims = 1
      self:start(exec)
    else
      self.pool:query("SELECT pg_notify('chorus_work', '')")
    end
  elseif here then
    -- Started at once: its first writes queue behind the insert on the
    -- execution's lane (often sharing its batch); we answer only once the
    -- insert has committed. If it fails, the execution's writes are
    -- refused too and it stops.
    exec.persisted, exec.claims = true, 1
    local t = sched.spawn(self.store.write, self.store, records, true, exec)
    self:start(exec)
    local _, ok, err = t:join()
    if not ok then
      exec:cancel()
      return nil, err
    end
  else
    local ok, err = self.store:write(records, true, exec)
    if not ok then return nil, err end
    exec.persisted = true
    self.pool:query("SELECT pg_notify('chorus_work', '')")
  end
  return summary(exec), here and exec or nil
end

return Node
