-- chorus.run.node.recover: rebuilding a claimed execution (at-least-once).
-- A claimed execution that already ran on another node is rebuilt from
-- its rows. Completed steps are never run again: their recorded output
-- is replayed. A step that was in flight runs again; its attempt numbers
-- continue where the record stopped. Statuses are restored through the
-- state machine (chorus.engine.states): exec:restore, exec:restore_step.
-- Methods of chorus.run.node.
local json = require "chorus.json"
local log = require "chorus.log"
local execution = require "chorus.engine.execution"

local Node = {}

-- The config snapshot is checked against the scripts loaded here (an
-- agent may be gone); the engine keeps the result per config version.
function Node:config_of(row)
  local key = row.config_id and (row.config_id .. ":" .. tostring(row.config_version))
  local cfg, errs = self.engine:prepare(row.config_snapshot, key)
  if not cfg then
    return nil, "the config snapshot is not valid against the loaded scripts: "
      .. require("chorus.engine.validate").format_errors(errs):gsub("\n", "; ")
  end
  return cfg
end

function Node.restore_steps(exec, rows)
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
        exec:restore_step(sr, "completed")
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
        exec:restore_step(sr, "failed")
        sr.answered_by, sr.error = r.answered_by, r.error
        sr.replayed = true
      elseif r.status == "failed" then
        exec:restore_step(sr, "failed")
        sr.error, sr.latency_ms = r.error, r.latency_ms
        sr.replayed = true
      elseif r.status == "skipped" and r.reason then -- its condition was false
        exec:restore_step(sr, "skipped")
        sr.reason = r.reason
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
    exec:restore(row.status == "paused" and "paused" or "running", row.started_at)
    exec.recovered = true
  end
  return exec, cfg and nil or err
end

return Node
