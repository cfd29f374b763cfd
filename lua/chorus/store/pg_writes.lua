-- chorus.store.pg_writes: turns a batch of write records into a handful of
-- bulk statements (one per kind, rows passed as arrays and expanded with
-- unnest) and tells, from their results, which records were refused.
--
-- Per-statement overhead (parse, plan, executor start, a protocol round of
-- messages) dominates single-row writes; with one statement per kind a
-- batch of 1000 executions costs five statements instead of ten thousand.
-- Within a batch only the newest write of a row is sent (a step's
-- "running" and "completed" committed together need only "completed").
--
-- Record kinds (fields as the columns they fill):
--   snapshot {hash, json}
--   insert   {id, trace_id, config_id, config_version, config_name,
--             config_hash, status, input, user_id, tenant_id,
--             idempotency_key, priority, node_id, claim_token, lease_ms,
--             claims, created_at}
--   step     {execution_id, step_id, step_index, name, agent,
--             agent_version, status, attempts, input, output,
--             output_truncated, error, latency_ms, tokens, cost,
--             answered_by, approval, compensation, started_at,
--             finished_at, seq, claims}
--   update   {id, status, output, error, answered_by, consensus, tokens,
--             cost, latency_ms, started_at, finished_at, script_versions,
--             paused, seq}
--   callback {execution_id, url, payload, seq}
-- JSON-valued fields (input, output, consensus, approval, compensation,
-- script_versions, payload, json) are JSON text already. Times are unix
-- seconds. A step or update record whose row did not take it (the
-- execution was claimed by another node, see chorus.store.pg) is fenced.
local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs
local concat, format, floor = table.concat, string.format, math.floor
local find, gsub = string.find, string.gsub

local M = {}

-- One element of a PostgreSQL array literal.
local function elem(v)
  if v == nil then return "NULL" end
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "NULL" end
    if v == floor(v) and v > -1e18 and v < 1e18 then return format("%.0f", v) end
    return format("%.17g", v)
  end
  if t == "boolean" then return v and "t" or "f" end
  -- Ids and names need no escaping: the fast path (every row of every
  -- batch passes here).
  if not find(v, '[%z\\"]') then return '"' .. v .. '"' end
  -- Text never holds NUL (PostgreSQL refuses it): drop such bytes.
  if find(v, "%z") then v = gsub(v, "%z", "") end
  return '"' .. gsub(v, '[\\"]', "\\%0") .. '"'
end

-- array(records, field) -> "{e1,e2,...}"
local function array(recs, field)
  local parts = {}
  for i = 1, #recs do parts[i] = elem(recs[i][field]) end
  return "{" .. concat(parts, ",") .. "}"
end
M.array = array

local function columns(recs, fields)
  local stmt = { n = #fields }
  for i, f in ipairs(fields) do stmt[i + 1] = array(recs, f) end
  return stmt
end

local SNAPSHOTS = [[
INSERT INTO orchestration_config_snapshots (hash, snapshot)
SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT (hash) DO NOTHING]]
local SNAPSHOT_FIELDS = { "hash", "json" }

-- An execution inserted and updated in the same batch is written once:
-- the update's fields ride on the insert (see build).
local INSERTS = [[
WITH t AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::text[], $7::text[],
  $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::uuid[],
  $15::float8[], $16::int[], $17::float8[], $18::jsonb[], $19::text[], $20::text[], $21::jsonb[],
  $22::bigint[], $23::float8[], $24::float8[], $25::float8[], $26::float8[], $27::jsonb[],
  $28::bool[], $29::bigint[])
  AS t(id, trace_id, config_id, config_version, config_name, config_hash, status, input, user_id,
       tenant_id, idempotency_key, priority, node_id, claim_token, lease_ms, claims, created_at,
       output, error, answered_by, consensus, tokens, cost, latency_ms, started_at, finished_at,
       script_versions, paused, seq)),
ins AS (
INSERT INTO orchestration_executions (id, trace_id, config_id, config_version, config_name, config_hash,
  status, input, user_id, tenant_id, idempotency_key, priority, node_id, claim_token, lease_expires_at,
  claims, created_at, output, error, answered_by, consensus, tokens, cost, latency_ms, started_at,
  finished_at, script_versions, paused_by_user, seq)
SELECT t.id, t.trace_id, t.config_id, t.config_version, t.config_name, t.config_hash, t.status, t.input,
  t.user_id, t.tenant_id, t.idempotency_key, t.priority, t.node_id, t.claim_token,
  CASE WHEN t.node_id IS NULL THEN NULL ELSE now() + t.lease_ms * interval '1 millisecond' END,
  t.claims, to_timestamp(t.created_at), t.output, t.error, t.answered_by, t.consensus,
  coalesce(t.tokens, 0), coalesce(t.cost, 0), t.latency_ms, to_timestamp(t.started_at),
  to_timestamp(t.finished_at), coalesce(t.script_versions, '{}'), coalesce(t.paused, false),
  coalesce(t.seq, 0)
FROM t
ON CONFLICT DO NOTHING
RETURNING id)
SELECT t.id::text AS id FROM t WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = t.id)]]
local INSERT_FIELDS = { "id", "trace_id", "config_id", "config_version", "config_name", "config_hash",
  "status", "input", "user_id", "tenant_id", "idempotency_key", "priority", "node_id", "claim_token",
  "lease_ms", "claims", "created_at", "output", "error", "answered_by", "consensus", "tokens", "cost",
  "latency_ms", "started_at", "finished_at", "script_versions", "paused", "seq" }
local MERGED = { "status", "output", "error", "answered_by", "consensus", "tokens", "cost", "latency_ms",
  "started_at", "finished_at", "script_versions", "paused", "seq" }

local STEPS = [[
WITH t AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
  $8::int[], $9::jsonb[], $10::jsonb[], $11::bool[], $12::text[], $13::float8[], $14::bigint[],
  $15::float8[], $16::text[], $17::jsonb[], $18::jsonb[], $19::float8[], $20::float8[],
  $21::bigint[], $22::int[])
  AS t(execution_id, step_id, step_index, name, agent, agent_version, status, attempts, input, output,
       output_truncated, error, latency_ms, tokens, cost, answered_by, approval, compensation,
       started_at, finished_at, seq, claims)),
ins AS (
INSERT INTO orchestration_step_runs (execution_id, step_id, step_index, name, agent, agent_version,
  status, attempts, input, output, output_truncated, error, latency_ms, tokens, cost, answered_by,
  approval, compensation, started_at, finished_at, seq)
SELECT t.execution_id, t.step_id, t.step_index, t.name, t.agent, t.agent_version, t.status, t.attempts,
  t.input, t.output, t.output_truncated, t.error, t.latency_ms, t.tokens, t.cost, t.answered_by,
  t.approval, t.compensation, to_timestamp(t.started_at), to_timestamp(t.finished_at), t.seq
FROM t
JOIN orchestration_executions e ON e.id = t.execution_id AND e.claims = t.claims
ON CONFLICT (execution_id, step_id) DO UPDATE SET agent_version = EXCLUDED.agent_version,
  status = EXCLUDED.status, attempts = EXCLUDED.attempts, input = EXCLUDED.input,
  output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated, error = EXCLUDED.error,
  latency_ms = EXCLUDED.latency_ms, tokens = EXCLUDED.tokens, cost = EXCLUDED.cost,
  answered_by = EXCLUDED.answered_by, approval = EXCLUDED.approval,
  compensation = EXCLUDED.compensation, started_at = EXCLUDED.started_at,
  finished_at = EXCLUDED.finished_at, seq = EXCLUDED.seq, updated_at = now()
WHERE orchestration_step_runs.seq <= EXCLUDED.seq
RETURNING execution_id, step_id)
SELECT t.execution_id::text AS execution_id, t.step_id FROM t
WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.execution_id = t.execution_id AND ins.step_id = t.step_id)]]
local STEP_FIELDS = { "execution_id", "step_id", "step_index", "name", "agent", "agent_version",
  "status", "attempts", "input", "output", "output_truncated", "error", "latency_ms", "tokens", "cost",
  "answered_by", "approval", "compensation", "started_at", "finished_at", "seq", "claims" }

local UPDATES = [[
WITH t AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::jsonb[], $7::bigint[],
  $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::jsonb[], $13::bool[], $14::bigint[])
  AS t(id, status, output, error, answered_by, consensus, tokens, cost, latency_ms, started_at,
       finished_at, script_versions, paused, seq)),
upd AS (
UPDATE orchestration_executions e SET status = t.status, output = t.output, error = t.error,
  answered_by = t.answered_by, consensus = t.consensus, tokens = t.tokens, cost = t.cost,
  latency_ms = t.latency_ms, started_at = to_timestamp(t.started_at),
  finished_at = to_timestamp(t.finished_at), script_versions = t.script_versions,
  paused_by_user = t.paused, seq = t.seq, updated_at = now()
FROM t
WHERE e.id = t.id AND e.seq <= t.seq
RETURNING e.id)
SELECT t.id::text AS id FROM t WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.id = t.id)]]
local UPDATE_FIELDS = { "id", "status", "output", "error", "answered_by", "consensus", "tokens", "cost",
  "latency_ms", "started_at", "finished_at", "script_versions", "paused", "seq" }

-- The outbox row goes in only with the terminal update that carries it
-- (same seq): a fenced node's callback is never written.
local CALLBACKS = [[
INSERT INTO orchestration_callbacks (execution_id, url, payload)
SELECT t.execution_id, t.url, t.payload
FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::bigint[]) AS t(execution_id, url, payload, seq)
JOIN orchestration_executions e ON e.id = t.execution_id AND e.seq = t.seq
ON CONFLICT (execution_id, url) DO NOTHING]]
local CALLBACK_FIELDS = { "execution_id", "url", "payload", "seq" }

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
  local function add(kind, sql, recs, fields)
    if #recs == 0 then return end
    local st = columns(recs, fields)
    st[1] = sql
    plan.stmts[#plan.stmts + 1] = st
    plan.kinds[#plan.stmts] = kind
  end
  add("snapshot", SNAPSHOTS, newest(by.snapshot, function(r) return r.hash end), SNAPSHOT_FIELDS)
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
  add("insert", INSERTS, inserts, INSERT_FIELDS)
  add("step", STEPS, newest(by.step, step_key), STEP_FIELDS)
  add("update", UPDATES, updates, UPDATE_FIELDS)
  add("callback", CALLBACKS, by.callback, CALLBACK_FIELDS)
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
