-- chorus.run.node.claim: how a node takes work and keeps it: claiming
-- pending or orphaned executions (`FOR UPDATE SKIP LOCKED` over active
-- executions whose lease is free or expired; a claim sets node_id, a new
-- claim_token and a lease, and bumps `claims`, which fences writes of any
-- earlier owner: see chorus.store.pg), the claim loop, and the heartbeat
-- that renews every lease the node holds. Methods of chorus.run.node.
local sched = require "chorus.sched"
local native = require "chorus.native"
local log = require "chorus.log"
local pgstore = require "chorus.store.pg"

local Node = {}

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

Node.RELEASE_SQL = [[
UPDATE orchestration_executions SET lease_expires_at = now() - interval '1 second'
WHERE node_id = $1 AND active]]

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
      self.restore_steps(exec, steps_by[row.id] or {})
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

return Node
