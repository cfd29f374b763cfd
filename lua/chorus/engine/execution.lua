-- chorus.engine.execution: one execution of a config, from pending to a terminal
-- status. It owns the state machine (chorus.engine.states), runs the strategy in
-- a child task, and offers the controls: pause, resume, cancel, approve,
-- reject. Compensation runs when a failed execution has completed steps
-- with `compensate`. Every transition is written to the store and emitted
-- on the bus.
--
-- Output: settings.output_step's output when set, otherwise what the
-- strategy returns (each built-in strategy documents its own).
local sched = require "chorus.sched"
local native = require "chorus.native"
local states = require "chorus.engine.states"
local context = require "chorus.engine.context"
local limits = require "chorus.engine.limits"

local now, time = sched.now, sched.time
-- Tables made at their size where it is known (LuaJIT's table.new): one
-- grown from empty is rehashed at each power of two.
local new_tab = require "table.new"
local ipairs, tostring, type, error = ipairs, tostring, type, error
local allowed = states.allowed

local Execution = {}
Execution.__index = Execution

local M = {}

-- The executions' metatable per config, computed once and shared (weak:
-- it goes with the config): the fields every execution of the config
-- shares (config, name, strategy, lookups, zero totals) are read through
-- it, so an execution's own table holds at most 16 fields while it runs
-- (a 17th doubles it: with 100k executions in flight every slot counts).
local classes = setmetatable({}, { __mode = "k" })

local function class_of(cfg)
  local class = classes[cfg]
  if class then return class end
  class = {
    config = cfg, config_name = cfg.name, strategy = cfg.strategy,
    steps_by_id = {},      -- step config by id
    index_of = {},         -- step id -> its position in steps (run_of)
    fallbacks = {},        -- step id -> its fallback steps
    primary_steps = {},    -- the steps that are not is_fallback
    compensates = false,   -- some step has `compensate`
    pending_approvals = 0, tokens = 0, cost = 0,
  }
  for i, step in ipairs(cfg.steps) do
    class.steps_by_id[step.id] = step
    class.index_of[step.id] = i
    if step.fallback_for then
      local chain = class.fallbacks[step.fallback_for]
      if not chain then chain = {}; class.fallbacks[step.fallback_for] = chain end
      chain[#chain + 1] = step
    end
    if not step.is_fallback then class.primary_steps[#class.primary_steps + 1] = step end
    if step.compensate then class.compensates = true end
  end
  class.__index = class
  classes[cfg] = setmetatable(class, Execution)
  return class
end

local OPTIONAL = { "auto_approve", "keep_inputs", "config_id", "config_version", "user_id", "tenant_id",
  "callback_url", "session_id", "metadata" }
-- opts.input_bytes: the input's size as chorus.engine.limits measured it at the
-- door (exec.bytes: what the execution holds, outputs added as they come).

-- create(cfg, input, registry, store, bus [, opts]) -> execution (not
-- started). cfg: validated, normalized; registry: the pinned snapshot.
-- opts (read, not kept): auto_approve, keep_inputs (record each step's
-- input), id, trace_id, config_id, config_version, user_id, tenant_id,
-- callback_url (a webhook of its own, see chorus.run.callbacks),
-- session_id, metadata, input_bytes. Fields that most executions never
-- use are set only when given. The caller's own options table is read
-- as it is: no table of options is made per execution.
function M.create(cfg, input, registry, store, bus, opts)
  local exec = setmetatable({
    id = opts and opts.id or native.uuid(),
    trace_id = opts and opts.trace_id or native.uuid(),
    status = "pending",
    input = input or {},
    registry = registry,
    store = store,
    bus = bus,
    created_at = time(),
    steps = new_tab(#cfg.steps, 0), -- step runs, declaration order (run_of(id))
    effective = {},           -- step id -> output dependents see
  }, class_of(cfg))
  if opts then
    for i = 1, #OPTIONAL do
      local k = OPTIONAL[i]
      local v = opts[k]
      if v ~= nil then exec[k] = v end
    end
    if opts.input_bytes then exec.bytes = opts.input_bytes end
  end
  local steps = exec.steps
  for i, step in ipairs(cfg.steps) do
    -- A step run holds what happens to the step; what the step is (name,
    -- agent, output_key) stays in the config: exec.steps_by_id[sr.id].
    -- Three fields until it runs (a pending step costs least); a completed
    -- one has eight (+ agent_version, started_at, latency_ms, output,
    -- finished_at): a ninth would double it.
    steps[i] = { id = step.id, status = "pending", attempts = 0 }
  end
  return exec
end

-- new(opts) -> execution (not started): create with opts.config,
-- opts.input, opts.registry, opts.store and opts.bus.
function M.new(opts)
  return M.create(opts.config, opts.input, opts.registry, opts.store, opts.bus, opts)
end

-- run_of(step_id) -> the step run of that step (nil for an unknown id).
-- Looked up through the config's shared index: a table per execution
-- for it cost ~160 bytes for each one in flight. Steps started at run time
-- (dynamic: ctx:run_step{...}, a map's items) are in self.dyn, made only
-- when the execution has some.
function Execution:run_of(step_id)
  local i = self.index_of[step_id]
  if i then return self.steps[i] end
  local d = self.dyn
  i = d and d.index[step_id]
  return i and self.steps[i]
end

-- step_of(step_id) -> the step's config, declared or dynamic, or nil.
function Execution:step_of(step_id)
  local s = self.steps_by_id[step_id]
  if s then return s end
  local d = self.dyn
  return d and d.steps[step_id]
end

-- position_of(step_id) -> its 1-based position in self.steps, or nil.
function Execution:position_of(step_id)
  local i = self.index_of[step_id]
  if i then return i end
  local d = self.dyn
  return d and d.index[step_id]
end

-- is_dynamic(step_id) -> true for a step the config does not list.
function Execution:is_dynamic(step_id)
  local d = self.dyn
  return d ~= nil and d.steps[step_id] ~= nil
end

-- add_step(step) -> step run | nil, err: a step the config does not list
-- (validated and normalized by chorus.engine.validate.dynamic_step), recorded
-- like a declared one. The same id again gives the step run it already
-- has (a strategy resumed after a crash starts its steps again: those
-- that ran are replayed, not run twice). Bounded by settings.max_steps.
function Execution:add_step(step)
  local d = self.dyn
  if d and d.steps[step.id] then return self.steps[d.index[step.id]] end
  if self.steps_by_id[step.id] then
    return nil, ("step id '%s' is a step of the config"):format(step.id)
  end
  local max = limits.setting(self.config.settings, "max_steps")
  if #self.steps >= max then
    return nil, ("the execution has %d steps, its maximum (settings.max_steps); cannot add '%s'")
      :format(#self.steps, step.id)
  end
  if not d then
    d = { index = {}, steps = {} }
    self.dyn = d
  end
  local sr = { id = step.id, status = "pending", attempts = 0 }
  local n = #self.steps + 1
  self.steps[n] = sr
  d.index[step.id], d.steps[step.id] = n, step
  return sr
end

-- The version of the strategy this execution runs (from its pinned
-- registry snapshot), or nil.
function Execution:strategy_version()
  local entry = self.registry and self.registry.strategies[self.strategy]
  return entry and entry.version
end

-- persist(ok, err) -> true | nil, err: the outcome of a store write.
-- "fenced" means another node has claimed this execution (this node's
-- lease had expired): this copy stops at once and writes nothing more. A
-- write whose waiting task was cancelled still commits; nothing to do.
-- Anything else is a write the store refused: returned, so the caller
-- undoes what it recorded (nothing may go on from a write that did not
-- commit).
function Execution:persist(ok, err)
  if ok or err == "cancelled" or err == "timeout" or self.fenced then return true end
  if err == "fenced" or err == "closed" then
    self.fenced = true
    require("chorus.log").warn_with({ trace_id = self.trace_id, execution_id = self.id },
      "execution %s: %s; stopping here", self.id, err == "fenced" and "taken over by another node" or "the store is closing")
    if self.task then self.task:cancel() end
    return true
  end
  require("chorus.log").error_with({ trace_id = self.trace_id, execution_id = self.id },
    "execution %s: store write refused: %s", self.id, tostring(err))
  return nil, tostring(err)
end

-- Events are only built when someone listens.
-- Each event carries seq, increasing within the execution (claims * 1e6 +
-- a counter, so a node resuming it after a crash goes on increasing):
-- subscribers replaying history then streaming live events drop
-- duplicates by it.
function Execution:emit(event)
  local n = (self.event_n or 0) + 1
  self.event_n = n
  event.execution_id, event.trace_id, event.at = self.id, self.trace_id, time()
  event.seq = (self.claims or 0) * 1e6 + n
  self.bus:emit(event)
end

-- event(type) -> a new event for the caller to fill and give to emit,
-- made at the size the status events reach (their fields, emit's four
-- and the node the hub adds), so filling it never grows it: one built by
-- a constructor and completed by emit was rehashed every time.
function Execution:event(type_)
  local e = new_tab(0, 16)
  e.type = type_
  return e
end

-- set_status(to) -> true | nil, err: the transition is undone when the
-- store refused to record it.
function Execution:set_status(to)
  local from = self.status
  if from == to then return true end
  if not allowed("execution", from, to) then
    error(("illegal execution transition %s -> %s"):format(from, to), 2)
  end
  self.status = to
  if to == "running" and not self.started_at then self.started_at = time() end
  -- paused_at: when the current pause began; set only while paused.
  local paused_at = self.paused_at
  if to == "paused" then self.paused_at = time() elseif from == "paused" then self.paused_at = nil end
  if not self.fenced then
    local ok, err = self:persist(self.store:update_execution(self))
    if not ok then
      self.status, self.paused_at = from, paused_at
      return nil, err
    end
  end
  if self.bus.n > 0 then
    local e = self:event("execution.status")
    e.status, e.previous, e.error, e.config, e.latency_ms = to, from, self.error, self.config_name, self.latency_ms
    self:emit(e)
  end
  return true
end

-- Restoring what a record says (a node resuming an execution another
-- node ran): the status is reached by the state machine's own steps from
-- where a new execution starts, without writing or telling anyone (the
-- record says it already). A status the machine cannot reach is an error.
local RESTORE_PATH = {
  execution = { running = { "running" }, paused = { "paused" }, compensation = { "running", "compensation" } },
  step = { completed = { "running", "completed" }, failed = { "running", "failed" }, skipped = { "skipped" },
    cancelled = { "running", "cancelled" } },
}

local function walk(machine, from, to)
  local path = RESTORE_PATH[machine][to]
  if not path then error(("cannot restore a %s to %s"):format(machine, tostring(to)), 3) end
  for _, s in ipairs(path) do
    if not allowed(machine, from, s) then
      error(("cannot restore a %s from %s to %s"):format(machine, from, to), 3)
    end
    from = s
  end
  return from
end

-- restore(status, started_at): a claimed execution resumed in status.
function Execution:restore(status, started_at)
  self.status = walk("execution", self.status, status)
  self.started_at = started_at
end

-- restore_step(sr, status): a step run as its record left it.
function Execution:restore_step(sr, status)
  sr.status = walk("step", sr.status, status)
end

-- set_step_status(sr, to) -> true | nil, err: as set_status; a refused
-- write leaves the step as it was (the caller fails it instead).
function Execution:set_step_status(sr, to)
  local from = sr.status
  if not allowed("step", from, to) then
    error(("illegal step transition %s: %s -> %s"):format(sr.id, from, to), 2)
  end
  sr.status = to
  local terminal = states.step_terminal[to]
  if terminal then sr.finished_at = time() end
  if not self.fenced then
    local ok, err = self:persist(self.store:save_step(self, sr))
    if not ok then
      sr.status = from
      if terminal then sr.finished_at = nil end
      return nil, err
    end
  end
  if terminal and to == "completed" and self.compensates then
    local co = self.completed_order
    if not co then co = {}; self.completed_order = co end
    co[#co + 1] = sr
  end
  if self.bus.n > 0 then
    local e = self:event("step.status")
    e.step_id, e.status, e.previous, e.attempts, e.latency_ms = sr.id, to, from, sr.attempts, sr.latency_ms
    e.error, e.agent, e.agent_version = sr.error, self:step_of(sr.id).agent, sr.agent_version
    e.tokens, e.cost, e.config = sr.tokens, sr.cost, self.config_name
    self:emit(e)
  end
  return true
end

-- save_progress(sr): stores a running step's row (its attempt number)
-- without a transition and without waiting for it.
function Execution:save_progress(sr)
  if not self.fenced then self:persist(self.store:save_step(self, sr, false)) end
end

function Execution:emit_step_event(sr, type_, err)
  if self.bus.n > 0 then
    self:emit({ type = type_, step_id = sr.id, attempts = sr.attempts, error = err,
      agent = self:step_of(sr.id).agent })
  end
end

-- Paused while the user paused it or any step awaits approval.
function Execution:refresh_status()
  local st = self.status
  local paused = self.paused_by_user or self.pending_approvals > 0
  if st == "pending" then
    if paused then self:set_status("paused") end
    return
  end
  if st ~= "running" and st ~= "paused" then return end
  self:set_status(paused and "paused" or "running")
end

-- Budgets (settings.max_tokens, max_cost): every step's usage is charged
-- as it is known; a streaming step's running usage is checked too.
local function commas(n)
  local s = ("%d"):format(n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

-- charge(tokens, cost): usage an attempt has finished with.
function Execution:charge(tokens, cost)
  self.spent_tokens = (self.spent_tokens or 0) + tokens
  self.spent_cost = (self.spent_cost or 0) + cost
  return self:check_budget(0, 0)
end

-- check_budget(live_tokens, live_cost) -> true | nil: over it, no new step
-- starts, what is in flight is cancelled, and the execution fails saying
-- which budget and by how much.
function Execution:check_budget(live_tokens, live_cost)
  local s = self.config.settings
  if not (s.max_tokens or s.max_cost) or self.budget_error then return not self.budget_error end
  local t = (self.spent_tokens or 0) + live_tokens
  local c = (self.spent_cost or 0) + live_cost
  local msg
  if s.max_tokens and t > s.max_tokens then
    msg = ("budget exceeded: tokens %s > %s"):format(commas(t), commas(s.max_tokens))
  elseif s.max_cost and c > s.max_cost then
    msg = ("budget exceeded: cost %.6g > %.6g"):format(c, s.max_cost)
  end
  if not msg then return true end
  self.budget_error = msg
  if self.task then self.task:cancel() end
  return nil
end

-- A step with on_failure = abort failed: stop every step in flight.
function Execution:abort(step_id, err)
  if self.aborted then return end
  self.aborted = { step = step_id, error = err }
  if self.task then self.task:cancel() end
end

-- request_approval(sr) -> {approved, by, reason} | nil when cancelled.
function Execution:request_approval(sr)
  local pending = { cond = sched.cond(), step_id = sr.id }
  self.approvals = self.approvals or {}
  self.approvals[sr.id] = pending
  self.pending_approvals = self.pending_approvals + 1
  self:refresh_status()
  if self.bus.n > 0 then self:emit({ type = "step.approval", step_id = sr.id, name = self:step_of(sr.id).name }) end
  local decision
  if self.auto_approve then
    decision = { approved = true, by = "auto" }
  else
    decision = pending.cond:wait()
    if type(decision) ~= "table" then decision = nil end
  end
  self.approvals[sr.id] = nil
  self.pending_approvals = self.pending_approvals - 1
  if decision then sr.approval = decision end
  self:refresh_status()
  return decision
end

-- Controls. Each returns true or nil, err (err for a wrong state).
local ACTIVE = { pending = true, running = true, paused = true }

function Execution:pause()
  if self.status ~= "running" and self.status ~= "paused" and self.status ~= "pending" then
    return nil, ("cannot pause an execution that is %s"):format(self.status)
  end
  self.paused_by_user = true
  self:refresh_status()
  return true
end

function Execution:resume()
  if not self.paused_by_user then return nil, "execution is not paused" end
  self.paused_by_user = false
  self:refresh_status()
  if self.resume_cond then self.resume_cond:signal(true) end
  return true
end

function Execution:cancel()
  if not ACTIVE[self.status] then
    return nil, ("cannot cancel an execution that is %s"):format(self.status)
  end
  self.cancel_requested = true
  if self.started_mono then
    if self.task then self.task:cancel() end
  elseif not self.finalized then
    -- Its task never ran (cancelled right after it was submitted): the
    -- execution ends here, at once.
    self.finalized = true
    if self.task then self.task:cancel() end
    self:end_unstarted("cancelled", "cancelled")
    if self.done_cond then self.done_cond:signal(true) end
    if self.on_end then self.on_end(self) end
  end
  return true
end

-- end_unstarted(status, err): ends an execution whose body never ran
-- (cancelled before it started, or a config that cannot run here).
function Execution:end_unstarted(status, err)
  for _, sr in ipairs(self.steps) do
    if sr.status == "pending" then self:set_step_status(sr, "skipped") end
  end
  self.error, self.finished_at, self.latency_ms = err, time(), 0
  self:set_status(status)
end

-- fail_unstarted(err): see end_unstarted; the execution fails with err.
function Execution:fail_unstarted(err)
  self.finalized = true
  self:end_unstarted("failed", err)
  if self.on_end then self.on_end(self) end
end

local function decide(self, step_id, decision)
  local pending = self.approvals and self.approvals[step_id]
  if not pending then
    return nil, ("step %s is not awaiting approval"):format(tostring(step_id))
  end
  pending.cond:signal(decision)
  return true
end

function Execution:approve(step_id, by)
  return decide(self, step_id, { approved = true, by = by })
end

function Execution:reject(step_id, reason, by)
  return decide(self, step_id, { approved = false, by = by, reason = reason })
end

-- Compensating agents of completed steps run in reverse completion order.
function Execution:compensate()
  local todo, done = {}, self.completed_order or {}
  for i = #done, 1, -1 do
    local sr = done[i]
    if self:step_of(sr.id).compensate then todo[#todo + 1] = sr end
  end
  if #todo == 0 then return end
  self:set_status("compensation")
  for _, sr in ipairs(todo) do
    local comp = self:step_of(sr.id).compensate
    local entry = self.registry.agents[comp.agent]
    local input = { step_id = sr.id, output = sr.output, input = self.input, error = self.error }
    local actx = { execution_id = self.id, trace_id = self.trace_id, step_id = sr.id,
      attempt = 1, params = comp.params, compensating = true }
    local t0 = now()
    local t = sched.spawn_with({ timeout_ms = comp.timeout_ms, script = true }, entry.module.call, input, actx, comp)
    local ok, out, err = t:join()
    local rec = { agent = comp.agent, agent_version = entry.version, latency_ms = now() - t0 }
    if ok and out ~= nil then
      rec.status = "completed"
    else
      rec.status = "failed"
      rec.error = ok and tostring(err or "agent returned no output") or tostring(out)
    end
    sr.compensation = rec
    if not self.fenced then self:persist(self.store:save_step(self, sr)) end
    if self.bus.n > 0 then
      self:emit({ type = "step.compensated", step_id = sr.id, status = rec.status, error = rec.error })
    end
  end
end

local function failure_message(self, ok, out, err)
  if self.budget_error then return self.budget_error end
  if self.aborted then
    return ("step %s failed: %s"):format(self.aborted.step, tostring(self.aborted.error))
  end
  if ok == nil then
    if out == "timeout" then
      return ("execution timed out after %d ms"):format(self.config.settings.timeout_ms or 0)
    end
    return "strategy failed: " .. tostring(out)
  end
  return tostring(err)
end

-- The execution's task: it runs the strategy, under settings.timeout_ms.
-- Cancel and abort cancel this task; what happens next (compensation, the
-- terminal status) runs in a task of its own, _finish, started when this
-- one is done: one coroutine per execution while it runs, not two.
local function body(self)
  local settings = self.config.settings
  self.started_mono = now()
  self:set_status("running")
  self:refresh_status() -- paused before it started: it starts paused
  local entry = self.registry.strategies[self.strategy]
  local ctx = context.new(self)
  native.script_enter() -- the strategy is script code: the watchdog times it
  return native.script_leave(entry.module.run(ctx, ctx.steps, settings))
end

-- The task goes: a finished execution stays in the store for a while,
-- and its task would keep its coroutine alive, which the collector
-- traverses again in every cycle's atomic phase (10,000 retained ones made
-- 10-20 ms pauses under load).
local function finished(self)
  self.finalized = true
  self.task = nil
  if self.done_cond then self.done_cond:signal(true) end
  if self.on_end then self.on_end(self) end
end

-- The store refused the execution's terminal record: it ends failed,
-- recorded without what it produced (its output, consensus). Refused
-- again, this node lets go of it (its lease lapses: a node that claims
-- it later finds its steps as recorded) and writes nothing more.
local function end_refused(self, why)
  self.error = "the database refused the execution's result (" .. why .. ")"
    .. (self.error and ("; it had failed with: " .. self.error) or "")
  self.output, self.consensus = nil, nil
  local ok, again = self:set_status("failed")
  if ok then return end
  require("chorus.log").error_with({ trace_id = self.trace_id, execution_id = self.id },
    "execution %s: the store refused its end twice (%s); leaving it to recovery", self.id, tostring(again))
  self.fenced = true
  if self.store.release then self.store:release(self) end
end

local function finish(self)
  if self.finalized then return end
  if self.fenced then
    -- Another node owns it now (or this node handed it over on its way
    -- out): this copy ends without writing anything.
    return finished(self)
  end
  if not self.started_mono then
    -- Cancelled before its task ever ran.
    self:end_unstarted("cancelled", "cancelled")
    return finished(self)
  end
  local settings = self.config.settings
  local ok, out, err = self.task:result()
  local status
  if self.budget_error then
    status, self.error = "failed", self.budget_error
  elseif self.cancel_requested or (ok == nil and out == "cancelled" and not self.aborted) then
    status, self.error = "cancelled", "cancelled"
  elseif self.aborted or ok == nil or (out == nil and err ~= nil) then
    status, self.error = "failed", failure_message(self, ok, out, err)
  else
    status = "completed"
    if settings.output_step then out = self.effective[settings.output_step] end
    self.output = out
  end
  for _, sr in ipairs(self.steps) do
    if sr.status == "pending" or sr.status == "paused" then self:set_step_status(sr, "skipped") end
    self.tokens = self.tokens + (sr.tokens or 0)
    self.cost = self.cost + (sr.cost or 0)
  end
  if status == "failed" then self:compensate() end
  self.latency_ms = now() - self.started_mono
  self.finished_at = time()
  if self.error then self.error = native.utf8_repair(self.error) end -- a strategy's own words
  local recorded, refused = self:set_status(status)
  if not recorded then end_refused(self, refused) end
  return finished(self)
end

-- _finish runs in its own task; a bug in it must not leave the execution
-- hanging: it ends failed with the error.
function Execution:_finish()
  local ok, err = xpcall(finish, debug.traceback, self)
  if not ok and not self.finalized then
    require("chorus.log").error_with({ trace_id = self.trace_id, execution_id = self.id },
      "execution %s: internal error: %s", self.id, tostring(err))
    self.error = "internal error: " .. tostring(err)
    if not states.execution_terminal[self.status] then self.status = "failed" end
    finished(self)
  end
end

-- start() runs the execution in a new task (a child of the caller's task
-- unless opts.detached) and returns the execution.
function Execution:start(opts)
  self.store:insert_execution(self)
  -- The task's options depend on the config alone: made once per config
  -- (its class), not per execution.
  local class = getmetatable(self)
  local key = opts and opts.detached and "_spawn_detached" or "_spawn"
  local so = rawget(class, key)
  if not so then
    so = { detached = key == "_spawn_detached", timeout_ms = self.config.settings.timeout_ms }
    class[key] = so
  end
  self.task = sched.spawn_with(so, body, self)
  self.task:on_done(self._finish, self)
  return self
end

-- wait() -> the execution once it has ended (or nil, why if the waiting
-- task is cancelled).
function Execution:wait()
  while not self.finalized do
    self.done_cond = self.done_cond or sched.cond()
    local ok, why = self.done_cond:wait()
    if not ok then return nil, why end
  end
  return self
end

-- record() -> the JSON-ready execution record (also `chorus run --json`).
function Execution:record()
  local steps = new_tab(#self.steps, 0)
  for i, sr in ipairs(self.steps) do
    local step = self:step_of(sr.id)
    steps[i] = {
      id = sr.id, name = step.name, status = sr.status, attempts = sr.attempts,
      latency_ms = sr.latency_ms, error = sr.error, agent = step.agent,
      agent_version = sr.agent_version, output = sr.output, tokens = sr.tokens or 0,
      cost = sr.cost or 0, answered_by = sr.answered_by, compensation = sr.compensation,
      approval = sr.approval, started_at = sr.started_at, finished_at = sr.finished_at,
      input = sr.input, reason = sr.reason, dynamic = self:is_dynamic(sr.id) or nil,
      cached = sr.cached, cached_from = sr.cached_from, rate_wait_ms = sr.rate_wait_ms,
      parent = step.parent, item_index = step.item_index,
    }
  end
  return {
    id = self.id, trace_id = self.trace_id, config = self.config_name,
    strategy = self.strategy, strategy_version = self:strategy_version(),
    status = self.status, input = self.input, output = self.output, error = self.error,
    created_at = self.created_at, started_at = self.started_at, paused_at = self.paused_at,
    finished_at = self.finished_at, answered_by = self.answered_by, consensus = self.consensus,
    config_id = self.config_id, config_version = self.config_version, user_id = self.user_id,
    tenant_id = self.tenant_id, session_id = self.session_id, metadata = self.metadata,
    steps = steps,
    metrics = { latency_ms = self.latency_ms, tokens = self.tokens, cost = self.cost },
  }
end

-- summary() -> the record without steps (execution lists).
function Execution:summary()
  return {
    id = self.id, trace_id = self.trace_id, config = self.config_name, config_id = self.config_id,
    config_version = self.config_version, strategy = self.strategy, status = self.status, error = self.error,
    user_id = self.user_id, tenant_id = self.tenant_id, session_id = self.session_id, metadata = self.metadata,
    created_at = self.created_at, started_at = self.started_at, paused_at = self.paused_at,
    finished_at = self.finished_at,
    metrics = { latency_ms = self.latency_ms, tokens = self.tokens, cost = self.cost },
  }
end

M.Execution = Execution
return M
