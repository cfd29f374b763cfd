-- chorus.store.pg_writes: turns a batch of write records into a handful of
-- bulk statements (one per kind, rows passed as arrays and expanded with
-- unnest) and tells, from their results, which records were refused.
--
-- Per-statement overhead (parse, plan, executor start, a protocol round of
-- messages) dominates single-row writes; with one statement per kind a
-- batch of 1000 executions costs five statements instead of ten thousand,
-- each with its rows in one JSON parameter.
-- Within a batch only the newest write of a row is sent (a step's
-- "running" and "completed" committed together need only "completed").
--
-- Record kinds (fields as the columns they fill):
--   snapshot {hash, json}
--   insert   {id, trace_id, config_id, config_version, config_name,
--             config_hash, status, input, user_id, tenant_id,
--             idempotency_key, priority, node_id, claim_token, lease_ms,
--             claims, created_at, callback_url, session_id, metadata}
--   step     {execution_id, step_id, step_index, name, agent,
--             agent_version, status, attempts, input, output,
--             output_truncated, error, latency_ms, tokens, cost,
--             answered_by, approval, compensation, started_at,
--             finished_at, seq, claims, definition, reason, cached,
--             cached_from, rate_wait_ms}
--   update   {id, status, output, error, answered_by, consensus, tokens,
--             cost, latency_ms, started_at, finished_at, paused_at,
--             script_versions, paused, seq}
--   callback {execution_id, url, payload, seq}
-- JSON-valued fields (input, output, consensus, approval, compensation,
-- script_versions, payload, json) are JSON text already. Times are unix
-- seconds. A step or update record whose row did not take it (the
-- execution was claimed by another node, see chorus.store.pg) is fenced.
local json = require "chorus.json"

local tostring, ipairs, pairs = tostring, ipairs, pairs
local encode_flat = json.encode_flat

local M = {}

-- Each statement takes its rows as ONE parameter, a JSON array of the
-- records, encoded by lua-cjson (in C) and expanded by jsonb_to_recordset:
-- building PostgreSQL array literals value by value in Lua was a fifth of
-- the store's CPU. JSON-valued fields are JSON text in the records: they
-- come in as text and are cast to jsonb where they are written.

local SNAPSHOTS = [[
INSERT INTO orchestration_config_snapshots (hash, snapshot)
SELECT t.hash, t.json::jsonb FROM jsonb_to_recordset($1::jsonb) AS t(hash text, json text)
ON CONFLICT (hash) DO NOTHING]]

-- An execution inserted and updated in the same batch is written once:
-- the update's fields ride on the insert (see build).
local INSERTS = [[
WITH t AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, trace_id uuid, config_id uuid,
  config_version int, config_name text, config_hash text, status text, input text, user_id text,
  tenant_id text, idempotency_key text, priority int, node_id text, claim_token uuid, lease_ms float8,
  claims int, created_at float8, output text, error text, answered_by text, consensus text,
  tokens bigint, cost float8, latency_ms float8, started_at float8, finished_at float8,
  paused_at float8, script_versions text, paused bool, seq bigint, callback_url text, session_id text,
  metadata text)),
ins AS (
INSERT INTO orchestration_executions (id, trace_id, config_id, config_version, config_name, config_hash,
  status, active, input, user_id, tenant_id, idempotency_key, priority, node_id, claim_token,
  lease_expires_at, claims, created_at, output, error, answered_by, consensus, tokens, cost,
  latency_ms, started_at, finished_at, paused_at, script_versions, paused_by_user, seq, callback_url,
  session_id, metadata)
SELECT t.id, t.trace_id, t.config_id, t.config_version, t.config_name, t.config_hash, t.status,
  t.status NOT IN ('completed', 'failed', 'cancelled'),
  coalesce(t.input, '{}')::jsonb, t.user_id, t.tenant_id, t.idempotency_key, coalesce(t.priority, 0),
  t.node_id, t.claim_token,
  CASE WHEN t.node_id IS NULL THEN NULL ELSE now() + t.lease_ms * interval '1 millisecond' END,
  coalesce(t.claims, 0), to_timestamp(t.created_at), t.output::jsonb, t.error, t.answered_by,
  t.consensus::jsonb, coalesce(t.tokens, 0), coalesce(t.cost, 0), t.latency_ms,
  to_timestamp(t.started_at), to_timestamp(t.finished_at), to_timestamp(t.paused_at),
  coalesce(t.script_versions, '{}')::jsonb, coalesce(t.paused, false), coalesce(t.seq, 0),
  t.callback_url, t.session_id, coalesce(t.metadata, '{}')::jsonb
FROM t
ON CONFLICT DO NOTHING
RETURNING id)
SELECT t.id::text AS id FROM t WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = t.id)]]
local MERGED = { "status", "output", "error", "answered_by", "consensus", "tokens", "cost", "latency_ms",
  "started_at", "finished_at", "paused_at", "script_versions", "paused", "seq" }

local STEPS = [[
WITH t AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(execution_id uuid, step_id text,
  step_index int, name text, agent text, agent_version text, status text, attempts int, input text,
  output text, output_truncated bool, error text, latency_ms float8, tokens bigint, cost float8,
  answered_by text, approval text, compensation text, started_at float8, finished_at float8,
  seq bigint, claims int, definition text, reason text, cached bool, cached_from text,
  rate_wait_ms float8)),
ins AS (
INSERT INTO orchestration_step_runs (execution_id, step_id, step_index, name, agent, agent_version,
  status, attempts, input, output, output_truncated, error, latency_ms, tokens, cost, answered_by,
  approval, compensation, started_at, finished_at, seq, definition, reason, cached, cached_from,
  rate_wait_ms)
SELECT t.execution_id, t.step_id, t.step_index, t.name, t.agent, t.agent_version, t.status, t.attempts,
  t.input::jsonb, t.output::jsonb, coalesce(t.output_truncated, false), t.error, t.latency_ms,
  coalesce(t.tokens, 0), coalesce(t.cost, 0), t.answered_by, t.approval::jsonb, t.compensation::jsonb,
  to_timestamp(t.started_at), to_timestamp(t.finished_at), t.seq, t.definition::jsonb, t.reason,
  coalesce(t.cached, false), t.cached_from, t.rate_wait_ms
FROM t
JOIN orchestration_executions e ON e.id = t.execution_id AND e.claims = t.claims
ON CONFLICT (execution_id, step_id) DO UPDATE SET agent_version = EXCLUDED.agent_version,
  status = EXCLUDED.status, attempts = EXCLUDED.attempts, input = EXCLUDED.input,
  output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated, error = EXCLUDED.error,
  latency_ms = EXCLUDED.latency_ms, tokens = EXCLUDED.tokens, cost = EXCLUDED.cost,
  answered_by = EXCLUDED.answered_by, approval = EXCLUDED.approval,
  compensation = EXCLUDED.compensation, started_at = EXCLUDED.started_at,
  finished_at = EXCLUDED.finished_at, seq = EXCLUDED.seq, reason = EXCLUDED.reason,
  cached = EXCLUDED.cached, cached_from = EXCLUDED.cached_from, rate_wait_ms = EXCLUDED.rate_wait_ms,
  updated_at = now()
WHERE orchestration_step_runs.seq <= EXCLUDED.seq
RETURNING execution_id, step_id)
SELECT t.execution_id::text AS execution_id, t.step_id FROM t
WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.execution_id = t.execution_id AND ins.step_id = t.step_id)]]

local UPDATES = [[
WITH t AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, status text, output text,
  error text, answered_by text, consensus text, tokens bigint, cost float8, latency_ms float8,
  started_at float8, finished_at float8, paused_at float8, script_versions text, paused bool,
  seq bigint)),
upd AS (
UPDATE orchestration_executions e SET status = t.status,
  active = t.status NOT IN ('completed', 'failed', 'cancelled'), output = t.output::jsonb, error = t.error,
  answered_by = t.answered_by, consensus = t.consensus::jsonb, tokens = coalesce(t.tokens, 0),
  cost = coalesce(t.cost, 0), latency_ms = t.latency_ms, started_at = to_timestamp(t.started_at),
  finished_at = to_timestamp(t.finished_at), paused_at = to_timestamp(t.paused_at),
  script_versions = coalesce(t.script_versions, '{}')::jsonb,
  paused_by_user = coalesce(t.paused, false), seq = t.seq, updated_at = now()
FROM t
WHERE e.id = t.id AND e.seq <= t.seq
RETURNING e.id)
SELECT t.id::text AS id FROM t WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.id = t.id)]]

-- The outbox row goes in only with the terminal update that carries it
-- (same seq): a fenced node's callback is never written.
local CALLBACKS = [[
INSERT INTO orchestration_callbacks (execution_id, url, payload)
SELECT t.execution_id, t.url, t.payload::jsonb
FROM jsonb_to_recordset($1::jsonb) AS t(execution_id uuid, url text, payload text, seq bigint)
JOIN orchestration_executions e ON e.id = t.execution_id AND e.seq = t.seq
ON CONFLICT (execution_id, url) DO NOTHING]]

-- Keeps the newest record per key (by seq), in first-seen order.
local function newest(recs, key)
  local by, order = {}, {}
  for _, r in ipairs(recs) do
    local k = key(r)
    local cur = by[k]
    if not cur then
      by[k] = r
      order[#order + 1] = k
    elseif (r.seq or 0) >= (cur.seq or 0) then
      by[k] = r
    end
  end
  local out = {}
  for i, k in ipairs(order) do out[i] = by[k] end
  return out
end

local function step_key(r) return r.execution_id .. " " .. r.step_id end
local function id_key(r) return r.id end

-- build(records) -> plan: {stmts = {...}, kinds = {...}}; check(plan,
-- results) -> set of fenced records.
function M.build(records)
  local by = { snapshot = {}, insert = {}, step = {}, update = {}, callback = {} }
  for _, r in ipairs(records) do
    local list = by[r.kind]
    assert(list, "unknown write kind " .. tostring(r.kind))
    list[#list + 1] = r
  end
  local plan = { stmts = {}, kinds = {} }
  local function add(kind, sql, recs)
    if #recs == 0 then return end
    local rows, err = encode_flat(recs)
    assert(rows, err)
    plan.stmts[#plan.stmts + 1] = { sql, rows, n = 1 }
    plan.kinds[#plan.stmts] = kind
  end
  add("snapshot", SNAPSHOTS, newest(by.snapshot, function(r) return r.hash end))
  -- Updates of executions inserted in this batch ride on the insert.
  local inserts = newest(by.insert, id_key)
  local inserted = {}
  for i, r in ipairs(inserts) do
    local copy = {}
    for k, v in pairs(r) do copy[k] = v end
    inserts[i], inserted[r.id] = copy, copy
  end
  local updates = {}
  for _, u in ipairs(newest(by.update, id_key)) do
    local ins = inserted[u.id]
    if ins then
      for _, f in ipairs(MERGED) do ins[f] = u[f] end
    else
      updates[#updates + 1] = u
    end
  end
  plan.merged = inserted
  add("insert", INSERTS, inserts)
  add("step", STEPS, newest(by.step, step_key))
  add("update", UPDATES, updates)
  add("callback", CALLBACKS, by.callback)
  plan.records = by
  return plan
end

-- The step, update and insert statements return the keys of the rows
-- they did NOT write (normally none: a small result to read).
function M.check(plan, results)
  local refused = { step = {}, update = {}, insert = {} }
  for i, kind in ipairs(plan.kinds) do
    local set = refused[kind]
    if set then
      for _, row in ipairs(results[i].rows) do
        set[kind == "step" and (row.execution_id .. " " .. row.step_id) or row.id] = true
      end
    end
  end
  local fenced = {}
  for _, r in ipairs(plan.records.step) do
    if refused.step[step_key(r)] then fenced[r] = true end
  end
  for _, r in ipairs(plan.records.update) do
    local no = refused.update[r.id] or (plan.merged[r.id] and refused.insert[r.id])
    if no then fenced[r] = true end
  end
  return fenced, refused.insert
end

-- insert_refused(plan, results, id) -> true when the insert of id did not
-- happen (the row, or its idempotency key, existed already)
function M.insert_refused(plan, results, id)
  for i, kind in ipairs(plan.kinds) do
    if kind == "insert" then
      for _, row in ipairs(results[i].rows) do
        if row.id == id then return true end
      end
    end
  end
  return false
end

return M
