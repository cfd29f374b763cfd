-- chorus.node: a node of a Chorus cluster over PostgreSQL: it claims
-- pending (or orphaned) executions, runs them, keeps their leases alive,
-- applies controls sent by any node, and doubles as the API's runner
-- (same interface as chorus.runner: submit, control, close).
--
-- Claiming: `FOR UPDATE SKIP LOCKED` over active executions whose lease is
-- free or expired; a claim sets node_id, a new claim_token and a lease,
-- and bumps `claims`, which fences writes of any earlier owner (see
-- chorus.store.pg). A heartbeat renews every lease this node holds. A node
-- that dies stops renewing; its executions are claimed again once their
-- leases expire.
--
-- Recovery (at-least-once): a claimed execution that already ran on
-- another node is rebuilt from its rows. Completed steps are never run
-- again: their recorded output is replayed. A step that was in flight
-- runs again; its attempt numbers continue where the record stopped.
--
-- Wake-ups: NOTIFY chorus_work (new pending work) and chorus_control
-- (pause/resume/cancel/approve/reject for an execution, JSON payload),
-- with polling as a fallback.
local sched = require "chorus.sched"
local native = require "chorus.native"
local json = require "chorus.json"
local log = require "chorus.log"
local execution = require "chorus.execution"
local pgstore = require "chorus.store.pg"
local limits = require "chorus.limits"

local M = {}

local Node = {}
Node.__index = Node

M.defaults = { concurrency = 1000, lease_ms = 15000, poll_ms = 1000, claim_batch = 200, max_pending = 100000 }

-- new({engine, pool, store, concurrency, lease_ms, poll_ms, claim}) -> node
-- engine.store must be store (a chorus.store.pg). claim = false: a node
-- that only submits (runs what it submits itself, claims nothing else).
function M.new(opts)
  local d = M.defaults
  local self = setmetatable({
    engine = opts.engine, pool = opts.pool, store = opts.store or opts.engine.store,
    node_id = opts.node_id or ("%s:%d:%s"):format(native.hostname(), native.pid(), native.random_hex(4)),
    concurrency = opts.concurrency or d.concurrency, lease_ms = opts.lease_ms or d.lease_ms,
    poll_ms = opts.poll_ms or d.poll_ms, claim_batch = opts.claim_batch or d.claim_batch,
    claiming = opts.claim ~= false, max_pending = opts.max_pending or d.max_pending,
    running = {}, nrunning = 0, cfg_cache = setmetatable({}, { __mode = "v" }),
    wakeup = sched.cond(), stopping = false, stats = { claimed = 0, recovered = 0, fenced = 0 },
  }, Node)
  return self
end

-- SQL ----------------------------------------------------------------------


local CLAIM = [[
UPDATE orchestration_executions e
SET node_id = $1, claim_token = gen_random_uuid(),
    lease_expires_at = now() + $2::float8 * interval '1 millisecond',
    claims = e.claims + 1, updated_at = now()
FROM (SELECT id FROM orchestration_executions
      WHERE active
        AND (lease_expires_at IS NULL OR lease_expires_at < now())
      ORDER BY priority DESC, created_at
      LIMIT $3 FOR UPDATE SKIP LOCKED) c
WHERE e.id = c.id
RETURNING ]] .. pgstore.exec_cols("e")

-- Only what this node still runs: an execution it let go of (its end
-- could not be recorded) must lapse, so another claim recovers it.
local RENEW = [[
UPDATE orchestration_executions SET lease_expires_at = now() + $2::float8 * interval '1 millisecond'
WHERE node_id = $1 AND active AND id = ANY($3::uuid[])]]

local RELEASE = [[
UPDATE orchestration_executions SET lease_expires_at = now() - interval '1 second'
WHERE node_id = $1 AND active]]

-- Rebuilding a claimed execution ---------------------------------------

-- The config snapshot is checked against the scripts loaded here (an
-- agent may be gone); results are cached per config version.
function Node:config_of(row)
  local gen = self.engine.registry:snapshot().generation
  local key = row.config_id and (row.config_id .. ":" .. tostring(row.config_version) .. ":" .. gen)
  local cfg = key and self.cfg_cache[key]
  if cfg then return cfg end
  local errs
  cfg, errs = self.engine:validate(row.config_snapshot)
  if not cfg then
    return nil, "the config snapshot is not valid against the loaded scripts: "
      .. require("chorus.validate").format_errors(errs):gsub("\n", "; ")
  end
  if key then self.cfg_cache[key] = cfg end
  return cfg
end

local function restore_steps(exec, rows)
  -- Steps started at run time first, in the order they were added, so
  -- their runs sit where they were (a resumed strategy finds them again).
  table.sort(rows, function(a, b) return a.step_index < b.step_index end)
  for _, r in ipairs(rows) do
    if r.definition ~= nil and r.definition ~= json.null and not exec:run_of(r.step_id) then
      local ok, err = exec:add_step(r.definition)
      if not ok then log.warn("node: execution %s: step %s not restored: %s", exec.id, r.step_id, tostring(err)) end
    end
  end
  for _, r in ipairs(rows) do
    local sr = exec:run_of(r.step_id)
    if sr then
      sr.attempts = r.attempts or 0
      sr.agent_version = r.agent_version
      if r.status == "completed" and not r.output_truncated then
        sr.status = "completed"
        sr.output = r.output ~= json.null and r.output or nil
        sr.latency_ms, sr.tokens, sr.cost = r.latency_ms, r.tokens, r.cost
        sr.started_at, sr.finished_at = r.started_at, r.finished_at
        sr.cached, sr.cached_from, sr.rate_wait_ms = r.cached or nil, r.cached_from, r.rate_wait_ms
        sr.replayed = true
        exec.effective[r.step_id] = sr.output
        if exec.compensates then -- the order compensation runs in
          exec.completed_order = exec.completed_order or {}
          exec.completed_order[#exec.completed_order + 1] = sr
        end
      elseif r.status == "failed" and r.answered_by then
        -- Answered by its fallback chain: settled, with the chain's answer.
        sr.status, sr.answered_by, sr.error = "failed", r.answered_by, r.error
        local fb = exec:run_of(r.answered_by)
        sr.replayed = true
      elseif r.status == "failed" then
        sr.status, sr.error, sr.latency_ms = "failed", r.error, r.latency_ms
        sr.replayed = true
      elseif r.status == "skipped" and r.reason then -- its condition was false
        sr.status, sr.reason = "skipped", r.reason
        sr.replayed = true
      end
      -- running / paused / skipped: it runs again (at-least-once).
    end
  end
  -- A fallback-answered step's output is its answering step's output.
  for _, sr in ipairs(exec.steps) do
    if sr.answered_by and exec.effective[sr.id] == nil then
      exec.effective[sr.id] = exec.effective[sr.answered_by]
    end
  end
end

-- Builds the execution object of a claimed row (not started).
function Node:rebuild(row)
  local cfg, err = self:config_of(row)
  local exec = execution.new({
    config = cfg or { name = row.config_name, strategy = "?", steps = {}, settings = {} },
    input = row.input ~= json.null and row.input or {}, registry = self.engine.registry:snapshot(),
    store = self.store, bus = self.engine.bus, id = row.id, trace_id = row.trace_id,
    config_id = row.config_id, config_version = row.config_version,
    user_id = row.user_id, tenant_id = row.tenant_id, callback_url = row.callback_url,
    session_id = row.session_id, metadata = row.metadata ~= json.null and next(row.metadata or {}) and row.metadata or nil,
  })
  exec.persisted, exec.claims, exec.created_at = true, row.claims, row.created_at
  exec.node = self
  if row.paused_by_user then exec.paused_by_user = true end
  if row.status ~= "pending" then
    -- Resumed after its node died: it goes on running (compensation
    -- included: the strategy is resumed and decides again).
    exec.status = row.status == "paused" and "paused" or "running"
    exec.started_at = row.started_at
    if exec.status == "paused" then exec.paused_at = row.paused_at end
    exec.recovered = true
  end
  return exec, cfg and nil or err
end

-- Running ------------------------------------------------------------------

local function untrack(exec)
  local self = exec.node
  self.running[exec.id] = nil
  self.nrunning = self.nrunning - 1
  self.wakeup:signal(true)
end

function Node:track(exec)
  self.running[exec.id] = exec
  self.nrunning = self.nrunning + 1
  exec.node, exec.on_end = self, untrack
end

-- Starts a claimed execution; returns the execution.
function Node:start(exec, cfg_err)
  self:track(exec)
  if cfg_err then
    exec:fail_unstarted(cfg_err)
    return exec
  end
  exec:start({ detached = true })
  if exec.cancel_requested_at_claim then exec:cancel() end
  return exec
end

local function load_steps(self, ids)
  if #ids == 0 then return {} end
  local res, err = self.pool:query("SELECT " .. pgstore.STEP_COLS
    .. " FROM orchestration_step_runs WHERE execution_id = ANY($1::uuid[])", "{" .. table.concat(ids, ",") .. "}")
  if not res then return nil, err end
  local by = {}
  for _, r in ipairs(res.rows) do
    by[r.execution_id] = by[r.execution_id] or {}
    table.insert(by[r.execution_id], r)
  end
  return by
end

-- claim_once() -> number claimed | nil, err
function Node:claim_once()
  local room = self.concurrency - self.nrunning
  if room <= 0 or self.stopping then return 0 end
  local res, err = self.pool:query(CLAIM, self.node_id, self.lease_ms, math.min(room, self.claim_batch))
  if not res then return nil, err end
  local resumed = {}
  for _, row in ipairs(res.rows) do
    if row.status ~= "pending" then resumed[#resumed + 1] = row.id end
  end
  local steps_by, serr = load_steps(self, resumed)
  if not steps_by then
    -- Let the leases lapse rather than run them without their history.
    log.error("node: cannot load step runs of claimed executions: %s", tostring(serr))
    return nil, serr
  end
  for _, row in ipairs(res.rows) do
    local exec, cerr = self:rebuild(row)
    if row.status ~= "pending" then
      restore_steps(exec, steps_by[row.id] or {})
      self.stats.recovered = self.stats.recovered + 1
      log.info_with({ trace_id = row.trace_id, execution_id = row.id, config = row.config_name, claim = row.claims },
        "node: resuming execution %s (claim %d)", row.id, row.claims)
    end
    exec.cancel_requested_at_claim = row.cancel_requested
    self:start(exec, cerr)
  end
  self.stats.claimed = self.stats.claimed + #res.rows
  return #res.rows
end

function Node:claim_loop()
  while not self.stopping do
    local n, err = self:claim_once()
    if n == nil then log.warn("node: claim failed: %s", tostring(err)) end
    if not self.stopping and (n == nil or n == 0 or self.nrunning >= self.concurrency) then
      -- Sleep until notified, a slot frees up, or the poll interval.
      local waker = sched.spawn(function() sched.sleep(self.poll_ms) self.wakeup:signal(true) end)
      self.wakeup:wait()
      waker:cancel()
    end
  end
end

function Node:heartbeat_loop()
  local every = math.max(50, math.floor(self.lease_ms / 3))
  while not self.stopping do
    local ids = {}
    for id in pairs(self.running) do ids[#ids + 1] = id end
    local ok, err = self.pool:batch({
      { RENEW, self.node_id, self.lease_ms, "{" .. table.concat(ids, ",") .. "}" },
      { [[INSERT INTO chorus_nodes (node_id, hostname, pid) VALUES ($1, $2, $3)
          ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now()]], self.node_id, native.hostname(), native.pid() },
    })
    if not ok then log.warn("node: heartbeat failed: %s", tostring(err)) end
    if not sched.sleep(every) then return end
  end
end

-- Applies a control that arrived for an execution running here.
function Node:apply(msg)
  local exec = self.running[msg.id]
  if not exec then return end
  if msg.action == "pause" then exec:pause()
  elseif msg.action == "resume" then exec:resume()
  elseif msg.action == "cancel" then exec:cancel()
  elseif msg.action == "approve" then exec:approve(msg.step_id, msg.by)
  elseif msg.action == "reject" then exec:reject(msg.step_id, msg.reason, msg.by) end
end

-- One connection listens; it is re-opened if lost.
function Node:listen_loop(url)
  local pg = require "chorus.pg"
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

-- run({url = ...}): starts the node's loops (detached tasks) and returns.
function Node:run(opts)
  self.loops = {
    sched.spawn_with({ detached = true }, self.heartbeat_loop, self),
    sched.spawn_with({ detached = true }, self.listen_loop, self, opts.url),
  }
  if self.claiming then
    self.loops[#self.loops + 1] = sched.spawn_with({ detached = true }, self.claim_loop, self)
  end
  return self
end

-- stop({grace_ms}): stops claiming, gives running executions grace_ms to
-- end, then releases the leases of those still running so another node
-- resumes them at once (their progress is durable), and stops.
function Node:stop(opts)
  self.stopping = true
  self.wakeup:signal(true)
  local deadline = sched.now() + (opts and opts.grace_ms or 10000)
  if self.nrunning > 0 then
    log.info("node %s: stopping; %d executions running", self.node_id, self.nrunning)
  end
  while self.nrunning > 0 and sched.now() < deadline do sched.sleep(20) end
  if self.nrunning > 0 then
    log.info("node %s: handing %d executions over to other nodes", self.node_id, self.nrunning)
  end
  for _, exec in pairs(self.running) do
    -- Handed over: its progress so far is durable; this copy stops and
    -- writes nothing more (a step cancelled here must not be recorded as
    -- failed), and another node resumes it once the lease is released.
    exec.fenced = true
    if exec.task then exec.task:cancel() end
  end
  self.store.committer:flush()
  self.pool:query(RELEASE, self.node_id)
  self.pool:query("UPDATE chorus_nodes SET stopped_at = now() WHERE node_id = $1", self.node_id)
  for _, t in ipairs(self.loops or {}) do t:cancel() end
  log.info("node %s: stopped", self.node_id)
end

-- Runner interface (for the API and `chorus run --db`) ------------------

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

local CONTROL_STATES = {
  pause = { pending = true, running = true, paused = true },
  resume = { paused = true },
  cancel = { pending = true, running = true, paused = true, compensation = true },
}

-- control(key, action, args, scope): applied here when the execution runs
-- here; otherwise checked against its row, recorded (pause/cancel flags)
-- and sent to its node with NOTIFY chorus_control.
function Node:control(key, action, args, scope)
  local exec = self.store:get_execution(key)
  if exec and self.running[exec.id] then
    if scope and not scope.admin and (exec.tenant_id ~= scope.tenant_id or exec.user_id ~= scope.user_id) then
      return nil, "no such execution", "not_found"
    end
    return require("chorus.runner").apply(exec, action, args)
  end
  local rec, err = self.store:get_record(key, scope)
  if err then return nil, err end
  if not rec then return nil, "no such execution", "not_found" end
  local allowed = CONTROL_STATES[action]
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

function Node:close()
  self:stop({ grace_ms = 0 })
end

return M
