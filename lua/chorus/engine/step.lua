-- chorus.engine.step: the one step executor every strategy uses (ctx:run_step).
--
-- It owns the semantics of a step: input building, pause and approval
-- gates, the agent call in its own task under timeout_ms, retries with
-- exponential backoff and jitter, the fallback chain, on_failure, and the
-- bookkeeping of the step run (status, attempts, latency, tokens, cost,
-- agent version) with an event and a store write on every transition.
local sched = require "chorus.sched"
local native = require "chorus.native"
local limits = require "chorus.engine.limits"
local condition = require "chorus.engine.condition"
local template = require "chorus.template"
local step_cache = require "chorus.engine.step_cache"
local rate_limit = require "chorus.engine.rate_limit"
local schema = require "chorus.schema"
local json = require "chorus.json"
local log = require "chorus.log"
local new_tab = require "table.new"

local with_deadline, sleep, now, cancelled = sched.with_deadline, sched.sleep, sched.now, sched.cancelled
local defer = sched.defer
local yield_due = sched.yield_due
local scope_open, scope_close = sched.scope_open, sched.scope_close
local script_enter, script_leave = native.script_enter, native.script_leave

-- gate(exec, agent, sr) -> true | nil, why: waits for the agent's rate
-- limit (settings.rate_limits[agent], else the agent file's rate_limit)
-- and records the wait on the step. A handler's ctx:call passes through
-- the gate of the agent it calls too.
local function gate(exec, agent, sr)
  local limits_of = exec.config.settings.rate_limits
  local limit = limits_of and limits_of[agent] or exec.registry.agents[agent].module.rate_limit
  if not limit then return true end
  local waited, why = rate_limit.acquire(agent, limit)
  if not waited then return nil, why end
  if waited > 0 then
    sr.rate_wait_ms = (sr.rate_wait_ms or 0) + waited
    if exec.bus.n > 0 then
      exec:emit({ type = "step.rate_limited", step_id = sr.id, agent = agent, wait_ms = waited })
    end
  end
  return true
end

-- gated_call: gate, then the agent as script code (the nested-deadline
-- path runs it in a task of its own).
local function gated_call(exec, step, sr, input, actx)
  local ok, why = gate(exec, step.agent, sr)
  if not ok then return nil, why end
  script_enter()
  return script_leave(exec.registry.agents[step.agent].module.call(input, actx, step))
end

-- cache_lookup -> true (a hit: sr.output, sr.cached set) | the key (a
-- miss: the result goes in once the step succeeds) | nil (not cacheable:
-- the input is not JSON). Both are told to subscribers (step.cache).
local function cache_lookup(exec, step, sr, input)
  local entry = exec.registry.agents[step.agent]
  local key = step_cache.key(step.agent, entry.version, step.params, input)
  if not key then return nil end
  local hit = step_cache.get(key)
  if exec.bus.n > 0 then
    exec:emit({ type = "step.cache", step_id = sr.id, agent = step.agent, hit = hit ~= nil })
  end
  if not hit then return key end
  sr.output, sr.cached, sr.cached_from = hit.output, true, hit.execution_id
  return true
end

local function cache_store(exec, step, key, out, meta)
  step_cache.put(key, { output = out, execution_id = exec.id,
    meta = type(meta) == "table" and { tokens = meta.tokens, cost = meta.cost } or nil }, step.cache.ttl_s)
end
local xpcall, traceback = xpcall, debug.traceback
local pairs, ipairs, type, tostring, random = pairs, ipairs, type, tostring, math.random
local min = math.min

local M = {}

-- The input of a step: the execution input, plus each dependency's
-- (effective) output under its output_key, or dep_<id> when it has none,
-- plus the decided consensus groups under consensus.<group>. A dependency
-- with an output_key is also readable as dep_<id> (input.dep_x, a
-- template's {{dep_x.status}}), through the step's metatable, but is
-- carried once: a pass-through agent returning its input must not
-- double it at every step.
local alias_mts = setmetatable({}, { __mode = "k" })

-- The closure is made in a function of its own: one that makes a
-- closure and returns early cannot be compiled (LuaJIT: NYI UCLO), and
-- alias_mt runs for every step.
local function aliases(names)
  return { __index = function(t, k)
    local real = names[k]
    if real then return rawget(t, real) end
  end }
end

local function alias_mt(exec, step)
  local mt = alias_mts[step]
  if mt ~= nil then return mt end
  local names, any = {}, false
  for _, dep_id in ipairs(step.dependencies) do
    local key = exec:step_of(dep_id).output_key
    if key then names["dep_" .. dep_id], any = key, true end
  end
  mt = any and aliases(names) or false
  alias_mts[step] = mt
  return mt
end

-- build_input(exec, step, extra): extra (a strategy's input for this run
-- of the step) and a dynamic step's own input come last and win.
function M.build_input(exec, step, extra)
  local input = new_tab(0, 4) -- most inputs are small: no rehash while they fill
  for k, v in pairs(exec.input) do input[k] = v end
  local deps = step.dependencies
  for i = 1, #deps do
    local dep_id = deps[i]
    local out = exec.effective[dep_id]
    if out ~= nil then
      input[exec:step_of(dep_id).output_key or ("dep_" .. dep_id)] = out
    end
  end
  if exec.consensus_outputs then input.consensus = exec.consensus_outputs end
  if step.input then for k, v in pairs(step.input) do input[k] = v end end
  if extra then for k, v in pairs(extra) do input[k] = v end end
  local mt = alias_mt(exec, step)
  if mt then setmetatable(input, mt) end
  return input
end

-- Backoff before attempt n+1 (n >= 1): backoff_ms * 2^(n-1), capped by
-- max_backoff_ms, with jitter (true = full, number = that fraction) taken
-- off at random so retries of many executions do not move in lockstep.
function M.backoff_ms(retry, n)
  local base = retry.backoff_ms or 0
  if base <= 0 then return 0 end
  local ms = base * 2 ^ (n - 1)
  if retry.max_backoff_ms then ms = min(ms, retry.max_backoff_ms) end
  local j = retry.jitter
  if j == true then j = 1 end
  if type(j) == "number" and j > 0 then ms = ms * (1 - j * random()) end
  return ms
end

-- The agent's ctx: step_id, params, config (the config's name) and
-- settings (the config's, read only: e.g. allow_unapproved_actions) are the
-- step's, shared through a class per step (weak: it goes with the config);
-- execution_id, trace_id, attempt and the execution are the attempt's own.
-- Its methods (M.agent_methods) are the agent's side of the scripting API:
--   ctx:delta(text)        a piece of a streamed answer: subscribers get a
--                          step.delta event (pieces of one loop turn are
--                          sent as one)
--   ctx:usage({tokens, cost}) what the attempt has used so far (budgets)
--   ctx:traceparent()      the W3C traceparent header for an outbound
--                          request of this attempt
local actx_classes = setmetatable({}, { __mode = "k" })
local Actx = {}
M.agent_methods = Actx
-- The execution is kept under a key of its own, not a name: agents see
-- the methods above, not the execution's internals.
local EXEC = {}

-- Deltas wait until the end of the loop turn: an SSE read that carries
-- several tokens becomes one event per step. One task flushes every
-- execution that has some (a task each cost a coroutine per execution
-- per turn: with a hundred answers streaming, a hundred a turn).
function M.flush_deltas(exec)
  local pending = exec._deltas
  exec._deltas = nil
  if not pending or exec.bus.n == 0 then return end
  for i = 1, #pending, 3 do
    local sr = exec:run_of(pending[i])
    local e = exec:event("step.delta")
    e.step_id, e.attempt, e.delta = pending[i], pending[i + 1], table.concat(pending[i + 2])
    e.agent, e.status = exec:step_of(pending[i]).agent, sr and sr.status
    exec:emit(e)
  end
end

local flushing, nflushing = {}, 0
local FLUSHER = { detached = true }

local function flush_all()
  local list, n = flushing, nflushing
  flushing, nflushing = {}, 0
  for i = 1, n do
    -- One execution's failure is not the others': their answers still go.
    -- Its pieces are dropped, so its next ones are queued (and flushed)
    -- afresh rather than held until the step ends.
    local exec = list[i]
    local ok, err = pcall(M.flush_deltas, exec)
    if not ok then
      exec._deltas = nil
      log.error("step.delta events of execution %s were lost: %s", tostring(exec.id), tostring(err))
    end
  end
end

function Actx:delta(text)
  if type(text) ~= "string" or text == "" then return end
  local exec = self[EXEC]
  if exec.bus.n == 0 then return end
  local pending = exec._deltas
  if not pending then
    pending = {}
    exec._deltas = pending
    nflushing = nflushing + 1
    flushing[nflushing] = exec
    if nflushing == 1 then sched.spawn_with(FLUSHER, flush_all) end
  end
  for i = 1, #pending, 3 do
    if pending[i] == self.step_id and pending[i + 1] == self.attempt then
      local parts = pending[i + 2]
      parts[#parts + 1] = text
      return
    end
  end
  pending[#pending + 1] = self.step_id
  pending[#pending + 1] = self.attempt
  pending[#pending + 1] = { text }
  -- The step streamed: its end defers (see run_attempts).
  local streamed = exec._streamed
  if not streamed then
    streamed = {}
    exec._streamed = streamed
  end
  streamed[self.step_id] = true
end

-- usage(u): what the attempt has used so far, while it streams; the
-- execution's budget is checked against it (a stream that takes it over
-- is stopped with everything else in flight).
function Actx:usage(u)
  if type(u) ~= "table" then return end
  local exec = self[EXEC]
  local sr = exec:run_of(self.step_id)
  if not sr then return end
  local t, c = tonumber(u.tokens) or 0, tonumber(u.cost) or 0
  sr.live_usage = { tokens = t, cost = c }
  exec:check_budget(t, c)
end

-- 00-<trace id>-<parent id>-01: the trace id is the execution's (a UUID
-- without dashes), the parent id 16 hex digits derived from the
-- execution, step and attempt, so log lines and the receiver agree.
-- The trace id's hex is kept on the execution (every attempt of every
-- step sends it).
function Actx:traceparent()
  local exec = self[EXEC]
  local trace = exec._trace_hex
  if not trace then
    trace = self.trace_id:gsub("-", "")
    exec._trace_hex = trace
  end
  local parent = native.sha256(self.execution_id .. "/" .. self.step_id .. "/" .. self.attempt):sub(1, 16)
  return ("00-%s-%s-01"):format(trace, parent)
end

-- call(agent, params [, input]) -> output, meta | nil, err, info: another
-- agent of the same script set, run as part of this attempt (the shipped
-- handlers are Lua over the llm, tws and kb adapters). Its params are
-- checked against its schema (defaults filled in); it shares the
-- attempt's deadline, cancel, deltas, trace and rate limit gate; its
-- usage comes back in meta for the caller to report. A check that
-- fails is an error that retrying cannot fix.
local NO_RETRY = { retry = false }

function Actx:call(agent, params, input)
  local exec = self[EXEC]
  local entry = type(agent) == "string" and exec.registry.agents[agent]
  if not entry then
    return nil, ("step %s: no agent '%s' is loaded"):format(self.step_id, tostring(agent)), NO_RETRY
  end
  local mod, p = entry.module, params or {}
  if mod.schema then
    local errors, s = {}, mod.schema
    if not s.type then s = { type = "object", fields = s.fields, additional = s.additional } end
    p = schema.check(p, s, "params", errors)
    if #errors > 0 then
      local parts = {}
      for i, e in ipairs(errors) do parts[i] = e.path .. ": " .. e.message end
      return nil, ("step %s: the %s agent's %s"):format(self.step_id, agent, table.concat(parts, "; ")), NO_RETRY
    end
  end
  local ok, why = gate(exec, agent, exec:run_of(self.step_id))
  if not ok then return nil, why end
  local step = exec:step_of(self.step_id)
  return mod.call(input or {}, setmetatable({ params = p }, { __index = self }),
    setmetatable({ agent = agent, params = p }, { __index = step }))
end

local function agent_ctx(exec, step, n)
  local class = actx_classes[step]
  if not class then
    class = setmetatable({ step_id = step.id, params = step.params, config = exec.config_name,
      settings = exec.config.settings }, { __index = Actx })
    class.__index = class
    actx_classes[step] = class
  end
  return setmetatable({ execution_id = exec.id, trace_id = exec.trace_id, attempt = n, [EXEC] = exec }, class)
end

-- An attempt's outcome as ok, output_or_err, meta. ok is true (the agent
-- answered), false (xpcall caught an error) or nil (with_deadline's
-- failure); timed_out: its deadline passed. An agent fails by returning
-- nil, message [, meta]; meta may say {retry = false} (retrying cannot
-- help: a 400 from a provider), {retry_after_ms = n} (the service asked
-- to wait), and {tokens, cost} the failed attempt used.
local function settle(step, timed_out, ok, out, meta, info)
  if timed_out or (ok == nil and out == "timeout") then
    return false, ("timeout after %d ms"):format(step.timeout_ms)
  end
  if not ok then return false, tostring(out) end
  if out == nil then
    if meta == nil then return false, "agent returned no output" end
    -- nil, {tokens = ...}: no message, only what it used
    if type(meta) == "table" then return false, "agent returned no output", meta end
    return false, tostring(meta), type(info) == "table" and info or nil
  end
  return true, out, meta
end

-- add_usage(exec, sr, meta): tokens and cost of an attempt, added to the step's
-- (a failed attempt's usage counts too).
-- add_usage(exec, sr, meta): the execution's budget is charged too
-- (settings.max_tokens / max_cost: past it, the execution fails).
local function add_usage(exec, sr, meta)
  sr.live_usage = nil
  if type(meta) ~= "table" then return end
  local tokens, cost = tonumber(meta.tokens), tonumber(meta.cost)
  if tokens and tokens > 0 then sr.tokens = (sr.tokens or 0) + tokens else tokens = 0 end
  if cost and cost > 0 then sr.cost = (sr.cost or 0) + cost else cost = 0 end
  if tokens > 0 or cost > 0 then exec:charge(tokens, cost) end
end

-- Waits while the execution is paused. Returns true, or nil, reason when
-- the waiting task is cancelled.
local function await_running(exec)
  while exec.paused_by_user do
    exec.resume_cond = exec.resume_cond or sched.cond()
    local ok, why = exec.resume_cond:wait()
    if not ok then return nil, why end
  end
  return true
end

-- The approval gate: the step run is paused (and so the execution) until
-- someone approves or rejects. Returns true or false, reason.
local function await_approval(exec, sr)
  exec:set_step_status(sr, "paused")
  local decision = exec:request_approval(sr)
  if decision == nil then return false, "cancelled" end
  if decision.approved then return true end
  return false, "rejected" .. (decision.reason and (": " .. decision.reason) or "")
end

-- failed(exec, step, sr, err, abort): the step failed (already recorded);
-- with abort (its on_failure), the execution aborts unless the failure is
-- its cancellation. Returns false, err.
local function failed(exec, step, err, abort)
  if abort and err ~= "cancelled" and not cancelled() then exec:abort(step.id, err) end
  return false, err
end

-- record_failure(exec, sr, err) -> true | nil, err: the step run becomes
-- failed. When the store refuses that record, it is tried once more
-- without what the step produced (its input and output); refused again,
-- the execution is aborted: it cannot go on from a record it cannot
-- write.
local function record_failure(exec, step, sr, err)
  if exec._deltas then M.flush_deltas(exec) end -- the answer so far first
  sr.error = err
  local ok, why = exec:set_step_status(sr, "failed")
  if ok then return true end
  sr.input, sr.output = nil, nil
  sr.error = "the database refused this step's record (" .. why .. "); it failed with: " .. err
  ok, why = exec:set_step_status(sr, "failed")
  if ok then return true end
  exec:abort(step.id, "the database refused this step's record: " .. why)
  return nil, why
end

-- cancel_step: the step was stopped by its execution (cancel, abort by a
-- sibling, the execution's deadline): it is "cancelled", not failed —
-- nothing went wrong with the step itself — whatever its agent did with
-- the cancel. why: the cancel reason ("cancelled" | "timeout").
local function cancel_step(exec, sr, why, t0)
  if exec._deltas then M.flush_deltas(exec) end
  sr.error = why == "timeout" and "execution timed out" or "cancelled"
  if t0 then sr.latency_ms = now() - t0 end
  sr.output = nil
  exec:set_step_status(sr, "cancelled")
  return false, "cancelled"
end

local function fail(exec, step, sr, err, t0, abort)
  err = native.utf8_repair(err)
  sr.latency_ms = now() - t0
  record_failure(exec, step, sr, err)
  return failed(exec, step, err, abort)
end

-- Conditions (`when`) are parsed once per step config.
local cond_asts = setmetatable({}, { __mode = "k" })

local function condition_holds(step, input)
  local ast = cond_asts[step]
  if not ast then
    ast = assert(condition.parse(step.when)) -- validated when the config was
    cond_asts[step] = ast
  end
  return condition.eval(ast, input)
end

-- skip: a false `when`; dependents still run, without this step's output.
local function skip(exec, sr, step)
  sr.reason = "condition false: " .. step.when
  exec:set_step_status(sr, "skipped")
  return false, "skipped"
end

-- Runs the step itself (no fallback chain). Returns ok, output_or_err.
local run_attempts

-- run_own(exec, step, sr, abort): the step itself (no fallback chain);
-- abort: a failure aborts the execution. Returns ok, output_or_err.
local function run_own(exec, step, sr, abort, extra)
  local ok, why = await_running(exec)
  if not ok then
    exec:set_step_status(sr, "skipped")
    return false, why
  end
  local input
  if step.when then
    input = M.build_input(exec, step, extra)
    if not condition_holds(step, input) then return skip(exec, sr, step) end
  end
  if step.approval then
    ok, why = await_approval(exec, sr)
    if not ok then
      if why == "cancelled" then return cancel_step(exec, sr, cancelled() or "cancelled") end
      sr.error = why
      exec:set_step_status(sr, "failed")
      return failed(exec, step, why, abort)
    end
  end
  -- Tail calls from ctx:run_step down to here: these frames are gone while
  -- the agent runs. Every slot of a step task's stack is paid for by each
  -- execution in flight (a stack that needs over ~90 slots doubles).
  return run_attempts(exec, step, sr, abort, input or extra, input ~= nil)
end

-- Records that the step runs now; returns its input. extra: the
-- strategy's input for this run, or (built) the whole input already.
local function begin_attempts(exec, step, sr, extra, built)
  sr.agent_version = exec.registry.agents[step.agent].version
  local input = built and extra or M.build_input(exec, step, extra)
  if exec.keep_inputs or exec.config.settings.keep_inputs then sr.input = input end
  sr.started_at = sched.time()
  -- After a crash the step runs again; attempt numbers go on from the
  -- record (the retry budget is this run's). Each attempt's number is
  -- stored as it starts, so a crash mid-attempt leaves it recorded.
  sr.attempts = (sr.attempts or 0) + 1
  exec:set_step_status(sr, "running")
  return input
end

-- held(exec) -> bytes the execution holds (its input, then its outputs)
local function held(exec)
  local n = exec.bytes
  if n then return n end
  local _, bytes = limits.check(exec.input, math.huge)
  n = bytes or 0
  exec.bytes = n
  return n
end

-- The output goes through the execution's limits before anything sees
-- it: its size, its nesting, JSON-ness, and text the stores would refuse
-- (repaired). Over a limit, the step fails with why (not retried: the
-- same agent would answer the same).
local function succeed(exec, step, sr, out, meta, t0, abort)
  add_usage(exec, sr, meta)
  -- An agent that ignored the cancel and answered anyway: its answer
  -- comes too late to count.
  local why_cancel = cancelled()
  if why_cancel then return cancel_step(exec, sr, why_cancel, t0) end
  local settings = exec.config.settings
  local max_out = limits.setting(settings, "max_output_bytes")
  local v, bytes, why = limits.check(out, max_out)
  if not v then
    if bytes == "too_large" then
      return fail(exec, step, sr, ("output is larger than %s (settings.max_output_bytes)")
        :format(limits.human(max_out)), t0, abort)
    end
    return fail(exec, step, sr, "output " .. why, t0, abort)
  end
  local total, max_exec = held(exec) + bytes, limits.setting(settings, "max_execution_bytes")
  if total > max_exec then
    return fail(exec, step, sr, ("output of %d bytes would take the execution over %s (settings.max_execution_bytes)")
      :format(bytes, limits.human(max_exec)), t0, abort)
  end
  exec.bytes = total
  -- What the agent streamed goes out before the step's end.
  if exec._deltas then M.flush_deltas(exec) end
  if why then
    require("chorus.log").warn_with({ trace_id = exec.trace_id, execution_id = exec.id, step_id = step.id },
      "execution %s: step %s: output text had NUL or malformed UTF-8 bytes; replaced by U+FFFD", exec.id, step.id)
  end
  out = v
  sr.latency_ms = now() - t0
  sr.output = out
  exec.effective[step.id] = out
  local ok, refused = exec:set_step_status(sr, "completed")
  if not ok then
    -- Not durable, so not done: nothing may run on this output.
    exec.effective[step.id], sr.output, exec.bytes = nil, nil, total - bytes
    return fail(exec, step, sr, "the database refused the step's result: " .. refused, t0, abort)
  end
  return true, out
end

-- After failed attempt n: false, err when the step is done failing (the
-- execution was cancelled, or no attempt is left); nil once the backoff
-- has passed and the next attempt is recorded.
-- info: what the agent said of its failure (settle): retry = false ends
-- the step now; retry_after_ms (a service's Retry-After) is the least
-- wait before the next attempt, within max_backoff_ms (or 5 minutes).
local MAX_RETRY_AFTER_MS = 300000

local function retry_or_stop(exec, step, sr, n, err, t0, abort, info)
  add_usage(exec, sr, info)
  -- Cancellation of the execution is never retried.
  local why_cancel = cancelled()
  if why_cancel then return cancel_step(exec, sr, why_cancel, t0) end
  local retry = step.retry
  if n >= retry.max_attempts or (info and info.retry == false) then return fail(exec, step, sr, err, t0, abort) end
  exec:emit_step_event(sr, "step.retry", err)
  local wait = M.backoff_ms(retry, n)
  local after = info and tonumber(info.retry_after_ms)
  if after and after > wait then wait = math.min(after, retry.max_backoff_ms or MAX_RETRY_AFTER_MS) end
  if wait > 0 then
    local slept, why = sleep(wait)
    if not slept then return cancel_step(exec, sr, why, t0) end
  end
  sr.attempts = sr.attempts + 1
  exec:save_progress(sr)
  return nil
end

-- The attempts of a step that may run now. Returns ok, output_or_err.
-- Each attempt's agent runs under the step's timeout as a deadline scope
-- of its own (a slow agent's pending I/O is aborted at the deadline), and
-- is called from here directly, with few locals below it: while the agent
-- waits, the step task's frames then need under a quarter of its stack
-- and the GC halves that stack — every execution in flight has one or
-- more such tasks waiting. Keep helpers out of this path.
function run_attempts(exec, step, sr, abort, extra, built)
  -- Steps whose agents never yield all run in their strategy's resume: past
  -- a quarter of the CPU budget it ends here, so the budget counts the
  -- scripts, not the engine's work between them, and the loop gets a turn.
  if yield_due() then sleep(0) end
  local input, t0 = begin_attempts(exec, step, sr, extra, built), now()
  local cache_key = step.cache and cache_lookup(exec, step, sr, input)
  if cache_key == true then return succeed(exec, step, sr, sr.output, nil, t0, abort) end
  local n = 1
  while true do
    local ok, out, meta, info
    if scope_open(step.timeout_ms) then
      ok, out = gate(exec, step.agent, sr) -- a rate limit's wait counts against the timeout
      if ok then
        script_enter() -- the agent is script code: the watchdog times it
        ok, out, meta, info = xpcall(exec.registry.agents[step.agent].module.call, traceback,
          input, agent_ctx(exec, step, sr.attempts), step)
        script_leave()
      end
      ok, out, meta = settle(step, scope_close(), ok, out, meta, info)
    else -- already inside a deadline scope: with_deadline uses a child task
      ok, out, meta, info = with_deadline(step.timeout_ms, gated_call, exec, step, sr, input,
        agent_ctx(exec, step, sr.attempts))
      ok, out, meta = settle(step, false, ok, out, meta, info)
    end
    -- A streamed answer usually ends in the same read as its last piece,
    -- and many may end at once: the step's end (its record, events, the
    -- execution's next step or end) waits until the loop has handled the
    -- I/O that came meanwhile, one such end a loop iteration, so the
    -- pieces other answers bring are not held up behind every end.
    local streamed = exec._streamed
    if streamed and streamed[step.id] then
      streamed[step.id] = nil
      defer()
    end
    if ok then
      if cache_key then cache_store(exec, step, cache_key, out, meta) end
      return succeed(exec, step, sr, out, meta, t0, abort)
    end
    local stop, err = retry_or_stop(exec, step, sr, n, out, t0, abort, meta)
    if stop ~= nil then return stop, err end
    n = n + 1
  end
end

-- run_map: a step with `map` runs once per item of the list its map names
-- (each a dynamic step "<id>.<n>" with the item in its input as `item`,
-- and `item_index`), at most settings.parallel_limit at a time; its
-- output is the list of the items' outputs, in order. One item that fails
-- fails the step, saying which.
local function run_map(exec, step, sr, abort, extra)
  local ok, why = await_running(exec)
  if not ok then
    exec:set_step_status(sr, "skipped")
    return false, why
  end
  local input = M.build_input(exec, step, extra)
  if step.when and not condition_holds(step, input) then return skip(exec, sr, step) end
  local t0 = now()
  sr.agent_version = exec.registry.agents[step.agent].version
  sr.started_at = sched.time()
  sr.attempts = (sr.attempts or 0) + 1
  exec:set_step_status(sr, "running")
  local path = step.map:match("{{%s*(.-)%s*}}")
  local list = template.lookup(input, path)
  if type(list) ~= "table" or list == json.null or (next(list) ~= nil and not json.is_array(list)) then
    return fail(exec, step, sr, ("map: {{%s}} is not a list (%s)"):format(path,
      list == nil and "no value" or list == json.null and "null" or type(list) == "table" and "an object" or type(list)),
      t0, abort)
  end
  local items = {}
  for i = 1, #list do
    local isr, err = exec:add_step({ id = step.id .. "." .. (i - 1), name = step.name .. " [" .. (i - 1) .. "]",
      agent = step.agent, params = step.params, timeout_ms = step.timeout_ms, retry = step.retry,
      on_failure = "continue", dependencies = step.dependencies, approval = step.approval,
      input = { item = list[i], item_index = i - 1 }, parent = step.id, item_index = i - 1 })
    if not isr then return fail(exec, step, sr, "map: " .. err, t0, abort) end
    items[i] = exec:step_of(step.id .. "." .. (i - 1))
  end
  local fns = {}
  for i = 1, #items do fns[i] = function() return M.run(exec, items[i], extra and { input = extra } or nil) end end
  local tasks, werr = sched.run_limited(fns, exec.config.settings.parallel_limit or #fns)
  if not tasks then return cancel_step(exec, sr, cancelled() or werr, t0) end
  local outputs, failures = json.array(), {}
  for i, t in ipairs(tasks) do
    local _, iok, iout = t:join()
    if iok then outputs[i] = iout == nil and json.null or iout
    else
      outputs[i] = json.null
      failures[#failures + 1] = ("%s: %s"):format(items[i].id, tostring(iout))
    end
  end
  if cancelled() then return cancel_step(exec, sr, cancelled(), t0) end
  if #failures > 0 then
    return fail(exec, step, sr, ("map: %d of %d items failed (%s)"):format(#failures, #items,
      table.concat(failures, "; ", 1, math.min(#failures, 5))), t0, abort)
  end
  return succeed(exec, step, sr, outputs, nil, t0, abort)
end

-- run(exec, step, opts) -> ok, output_or_err
-- opts.on_failure overrides the step's on_failure (the fallback strategy
-- treats every alternative as "continue"); opts.input is extra input for
-- this run of the step (merged over what it gets from its dependencies).
function M.run(exec, step, opts)
  local sr = exec:run_of(step.id)
  if sr.status == "completed" then -- replayed after a resume: never re-run
    return true, sr.output
  end
  if sr.status == "failed" and sr.answered_by then -- its fallback answered
    return true, exec.effective[step.id]
  end
  if sr.status ~= "pending" then
    return false, ("step %s already ran (%s)"):format(step.id, sr.status)
  end
  -- A strategy that goes on after an abort or a cancel starts nothing new:
  -- the step stays pending and is marked skipped when the execution ends.
  local why = cancelled()
  if why then return false, why end
  local on_failure = opts and opts.on_failure or step.on_failure
  local extra = opts and opts.input
  if step.map then return run_map(exec, step, sr, on_failure == "abort", extra) end
  local chain = exec.fallbacks[step.id]
  if not (chain and (on_failure == "fallback" or (opts and opts.try_fallbacks))) then
    return run_own(exec, step, sr, on_failure == "abort", extra) -- a tail call (see run_own)
  end
  local ok, out = run_own(exec, step, sr, false, extra)
  if ok then return true, out end
  if out == "cancelled" or cancelled() then return false, out end
  for _, fb in ipairs(chain) do
    local fok, fout = M.run(exec, fb, { on_failure = "continue", try_fallbacks = true })
    if fok then
      sr.answered_by = exec:run_of(fb.id).answered_by or fb.id
      exec.effective[step.id] = fout
      return true, fout
    end
    if cancelled() then return false, "cancelled" end
  end
  out = ("%s (and all %d fallbacks failed)"):format(tostring(out), #chain)
  -- A step whose own on_failure is "fallback" aborts once its chain is
  -- exhausted; a caller that said "continue" (the fallback strategy moving
  -- on to its next alternative) goes on.
  if on_failure ~= "continue" then exec:abort(step.id, out) end
  return false, out
end

return M
