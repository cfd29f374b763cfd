-- chorus.store.committer: group commit. Writes of many concurrent
-- executions are queued and sent together as one batch of bulk statements
-- (chorus.store.pg_writes), which PostgreSQL runs as one transaction with
-- one WAL flush; every writer waiting on the batch is woken once it has
-- committed. Durability is not weakened: a writer that waits returns only
-- after its records committed.
--
-- Writes are spread over `lanes` (default 2) by a key (the execution id):
-- each lane has one flusher and its own connection, so PostgreSQL works
-- on several batches at once, while all writes of one execution go
-- through one lane, in order, and batches of different lanes never touch
-- the same rows. When a statement fails, the batch
-- rolls back and its writes are sent again one by one, so only the write
-- at fault gets the error. A lost connection is retried (the pool
-- reconnects) until it succeeds: every write is idempotent (inserts ON
-- CONFLICT, updates guarded by a sequence number that re-applies equal
-- values).
--
--   new(pool, {lanes = 2, max_records = 5000, retry_max_ms = 2000})
--   committer:write(records, wait, key) -> true | nil, err, info
--     key: M.lane_key(execution id), so one execution keeps one lane
--     records: see chorus.store.pg_writes, kept together in one
--     transaction. A step or update record the database refused (another
--     node claimed the execution) makes the write return nil, "fenced".
--     wait = false queues the write and returns at once.
--   committer:flush() -> waits until everything queued so far committed
--   committer.stats: batches, records, retries, failures, max_batch
local sched = require "chorus.sched"
local log = require "chorus.log"
local writes = require "chorus.store.pg_writes"

local M = {}

local Lane = {}
Lane.__index = Lane

local function new_lane(pool, opts)
  return setmetatable({
    pool = pool, queue = {}, running = false, closed = false,
    max_records = opts.max_records or 5000,
    retry_max = opts.retry_max_ms or 2000,
    stats = { batches = 0, records = 0, retries = 0, failures = 0, max_batch = 0 },
  }, Lane)
end

local function wake(w, ...)
  if w.task then w.task:wake(...) end
  w.done, w.result = true, { ... }
end

-- Takes writes from the queue up to max_records.
local function take(self)
  local q, batch, n = self.queue, {}, 0
  local i = 1
  while i <= #q and (n == 0 or n + #q[i].records <= self.max_records) do
    batch[#batch + 1] = q[i]
    n = n + #q[i].records
    i = i + 1
  end
  local rest = {}
  for j = i, #q do rest[#rest + 1] = q[j] end
  self.queue = rest
  return batch, n
end

local function requeue_front(self, again)
  local q = {}
  for _, w in ipairs(again) do q[#q + 1] = w end
  for _, w in ipairs(self.queue) do q[#q + 1] = w end
  self.queue = q
end

-- Worth sending again later. "cancelled": the flusher itself is being
-- stopped (process shutdown); the writes stay queued.
local TRANSIENT = { closed = true, ["connection refused"] = true, ["connect failed"] = true, timeout = true,
  cancelled = true }

-- run(batch) -> results, plan | nil, err, info
local function run(self, batch)
  local records = {}
  for _, w in ipairs(batch) do
    for _, r in ipairs(w.records) do records[#records + 1] = r end
  end
  local plan = writes.build(records)
  if #plan.stmts == 0 then return {}, plan end
  local res, err, info = self.pool:batch(plan.stmts)
  if not res then return nil, err, info end
  return res, plan
end

local function settle(self, batch, res, plan, n)
  self.stats.batches = self.stats.batches + 1
  self.stats.records = self.stats.records + n
  if n > self.stats.max_batch then self.stats.max_batch = n end
  local fenced = #plan.stmts > 0 and writes.check(plan, res) or {}
  for _, w in ipairs(batch) do
    local refused = false
    for _, r in ipairs(w.records) do
      if fenced[r] then refused = true break end
    end
    if refused then wake(w, nil, "fenced", { code = "fenced" }) else wake(w, true) end
  end
end

-- One batch: send, then settle every write in it. Returns true when the
-- batch is settled, or false, err to retry after a backoff.
local function send(self, batch, n)
  local res, plan, info = run(self, batch)
  if res then
    settle(self, batch, res, plan, n)
    return true
  end
  local err = plan
  if info and TRANSIENT[info.code] then
    self.stats.retries = self.stats.retries + 1
    return false, err
  end
  -- A statement failed and the batch rolled back: find the write at fault
  -- by sending each alone.
  self.stats.failures = self.stats.failures + 1
  if #batch == 1 then
    log.error("store: write failed: %s", tostring(err))
    wake(batch[1], nil, err, info)
    return true
  end
  for i, w in ipairs(batch) do
    local ok = send(self, { w }, #w.records)
    if not ok then
      -- The connection went away meanwhile: the rest go again later.
      local rest = {}
      for j = i, #batch do rest[#rest + 1] = batch[j] end
      requeue_front(self, rest)
      return true
    end
  end
  return true
end

local function flusher(self)
  local backoff = 50
  while #self.queue > 0 do
    local batch, n = take(self)
    local ok, err = send(self, batch, n)
    if ok then
      backoff = 50
    else
      requeue_front(self, batch)
      log.warn("store: database unavailable (%s); retrying %d writes in %d ms", tostring(err), #self.queue, backoff)
      local slept = sched.sleep(backoff)
      if not slept or self.closed then break end
      backoff = math.min(backoff * 2, self.retry_max)
    end
  end
  self.running = false
  if self.closed then
    for _, w in ipairs(self.queue) do wake(w, nil, "closed", { code = "closed" }) end
    self.queue = {}
  end
end

local function start(self)
  if self.running then return end
  self.running = true
  self.flusher = sched.spawn_with({ detached = true }, flusher, self)
end

function Lane:write(records, wait)
  if self.closed then return nil, "closed", { code = "closed" } end
  local w = { records = records }
  if wait then w.task = sched.current() end
  local q = self.queue
  q[#q + 1] = w
  start(self)
  if not wait then return true end
  local r = { require("chorus.native").suspend() }
  if w.done then return unpack(w.result, 1, table.maxn(w.result)) end
  -- Our task was cancelled while waiting: the write stays queued and will
  -- commit; we just stop waiting for it.
  w.task = nil
  return nil, r[2] or "cancelled", { code = r[2] or "cancelled" }
end

-- The committer: lanes chosen by key.

local Committer = {}
Committer.__index = Committer

function M.new(pool, opts)
  opts = opts or {}
  local self = setmetatable({ lanes = {} }, Committer)
  for i = 1, opts.lanes or 2 do self.lanes[i] = new_lane(pool, opts) end
  -- stats: the sum over lanes, read live
  self.stats = setmetatable({}, { __index = function(_, k)
    local sum = 0
    for _, l in ipairs(self.lanes) do
      local v = l.stats[k] or 0
      if k == "max_batch" then sum = math.max(sum, v) else sum = sum + v end
    end
    return sum
  end })
  return self
end

-- lane_key(id) -> a number for write(): the same id, the same lane.
-- Computed once per execution by the store (hashing it per write showed in
-- profiles).
function M.lane_key(id)
  return tonumber(id:sub(1, 6), 16) or #id
end

function Committer:write(records, wait, key)
  local lanes = self.lanes
  local n = #lanes
  if n == 1 or key == nil then return lanes[1]:write(records, wait) end
  return lanes[key % n + 1]:write(records, wait)
end

-- flush(): waits until everything queued before, on every lane, committed.
function Committer:flush()
  local tasks = {}
  for i, l in ipairs(self.lanes) do tasks[i] = sched.spawn(function() return l:write({}, true) end) end
  sched.wait_all(tasks)
  return true
end

-- close(): drains what is queued, then refuses new writes.
function Committer:close()
  self:flush()
  for _, l in ipairs(self.lanes) do l.closed = true end
end

return M
