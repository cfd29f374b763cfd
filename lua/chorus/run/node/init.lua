-- chorus.run.node: a node of a Chorus cluster over PostgreSQL: it claims
-- pending (or orphaned) executions, runs them, keeps their leases alive,
-- applies controls sent by any node, and doubles as the API's runner
-- (the interface of chorus.run.service: submit, control, close). A node
-- that dies stops renewing its leases; its executions are claimed again
-- once they expire. Wake-ups: NOTIFY chorus_work (new pending work) and
-- chorus_control (a control for an execution, JSON payload), with polling
-- as a fallback.
--
-- Its parts: claim.lua (claiming, the heartbeat), recover.lua (rebuilding
-- a claimed execution), remote.lua (controls across nodes), submit.lua
-- (admission and a durable submit). This file: the node's life (new, run,
-- stop) and the executions it runs.
local sched = require "chorus.sched"
local native = require "chorus.native"
local log = require "chorus.log"

local M = {}

local Node = {}
Node.__index = Node
for _, part in ipairs({ "claim", "recover", "remote", "submit" }) do
  for name, fn in pairs(require("chorus.run.node." .. part)) do Node[name] = fn end
end

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
    running = {}, nrunning = 0,
    wakeup = sched.cond(), stopping = false, stats = { claimed = 0, recovered = 0, fenced = 0 },
  }, Node)
  return self
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
  self.pool:query(Node.RELEASE_SQL, self.node_id)
  self.pool:query("UPDATE chorus_nodes SET stopped_at = now() WHERE node_id = $1", self.node_id)
  for _, t in ipairs(self.loops or {}) do t:cancel() end
  log.info("node %s: stopped", self.node_id)
end

function Node:close()
  self:stop({ grace_ms = 0 })
end

return M
