-- chorus.store.committer: group commit. Writes of many concurrent
-- executions are queued and sent together as one pipelined batch, which
-- PostgreSQL runs as one transaction with one WAL flush; every writer
-- waiting on the batch is woken when it has committed. Durability is not
-- weakened: a writer that waits returns only after its statements
-- committed.
--
-- One flusher per committer keeps batches in order, so two writes of the
-- same row never overtake each other. A statement that fails rolls its
-- batch back: that write gets the error and the others are sent again.
-- A lost connection is retried (the pool reconnects) until it succeeds:
-- every statement we send is idempotent (inserts ON CONFLICT, updates
-- guarded by a sequence number that re-applies equal values).
--
--   new(pool, {max_statements = 2000, retry_max_ms = 2000}) -> committer
--   committer:write(stmts, wait) -> true | nil, err, info
--     stmts: {{sql, p1, p2, ..., n = count, must_affect = bool}...}, kept
--     together in one transaction. must_affect: 0 affected rows means this
--     node's claim on the execution was taken over: err "fenced".
--     wait = false queues the write and returns at once.
--   committer:flush() -> waits until everything queued so far committed
--   committer.stats: batches, statements, retries, failures
local sched = require "chorus.sched"
local log = require "chorus.log"

local M = {}

local Committer = {}
Committer.__index = Committer

function M.new(pool, opts)
  opts = opts or {}
  return setmetatable({
    pool = pool, queue = {}, running = false, closed = false,
    max_statements = opts.max_statements or 2000,
    retry_max = opts.retry_max_ms or 2000,
    stats = { batches = 0, statements = 0, retries = 0, failures = 0, max_batch = 0 },
  }, Committer)
end

local function wake(w, ...)
  if w.task then w.task:wake(...) end
  w.done, w.result = true, { ... }
end

-- Takes writes from the queue up to max_statements.
local function take(self)
  local q, batch, n = self.queue, {}, 0
  local i = 1
  while i <= #q and (n == 0 or n + #q[i].stmts <= self.max_statements) do
    batch[#batch + 1] = q[i]
    n = n + #q[i].stmts
    i = i + 1
  end
  local rest = {}
  for j = i, #q do rest[#rest + 1] = q[j] end
  self.queue = rest
  return batch, n
end

local function requeue_front(self, writes)
  local q = {}
  for _, w in ipairs(writes) do q[#q + 1] = w end
  for _, w in ipairs(self.queue) do q[#q + 1] = w end
  self.queue = q
end

-- One batch: send, then settle every write in it. Returns true when the
-- batch is settled, or false to retry after a backoff (lost connection).
local function send(self, batch, nstmts)
  local list, owner = {}, {}
  for _, w in ipairs(batch) do
    for _, st in ipairs(w.stmts) do
      list[#list + 1] = st
      owner[#list] = w
    end
  end
  local res, err, info = self.pool:batch(list)
  if res then
    self.stats.batches = self.stats.batches + 1
    self.stats.statements = self.stats.statements + nstmts
    if nstmts > self.stats.max_batch then self.stats.max_batch = nstmts end
    local fenced = {}
    for i, st in ipairs(list) do
      if st.must_affect and res[i].affected == 0 then fenced[owner[i]] = true end
    end
    for _, w in ipairs(batch) do
      if fenced[w] then
        wake(w, nil, "fenced", { code = "fenced" })
      else
        wake(w, true)
      end
    end
    return true
  end
  local code = info and info.code
  if code == "closed" or code == "connection refused" or code == "connect failed" or code == "timeout" then
    self.stats.retries = self.stats.retries + 1
    return false, err
  end
  -- A statement failed: its write gets the error, the rest go again.
  self.stats.failures = self.stats.failures + 1
  local bad = info and info.index and owner[info.index]
  if not bad then
    -- Unknown culprit: fail them all rather than loop.
    for _, w in ipairs(batch) do wake(w, nil, err, info) end
    return true
  end
  log.error("store: write failed: %s", tostring(err))
  wake(bad, nil, err, info)
  local others = {}
  for _, w in ipairs(batch) do if w ~= bad then others[#others + 1] = w end end
  requeue_front(self, others)
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

function Committer:write(stmts, wait)
  if self.closed then return nil, "closed", { code = "closed" } end
  local w = { stmts = stmts }
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

-- flush(): a write that waits for everything before it.
function Committer:flush()
  return self:write({}, true)
end

-- close(): drains what is queued (bounded by the caller's patience), then
-- refuses new writes.
function Committer:close()
  if #self.queue > 0 or self.running then self:flush() end
  self.closed = true
end

return M
