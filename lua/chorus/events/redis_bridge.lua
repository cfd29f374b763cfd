-- chorus.events.redis_bridge: carries execution events between nodes
-- through Redis. Every event of an execution running here is published
-- on chorus:events:<trace_id> (per execution) and chorus:events (global),
-- and appended to the stream chorus:stream:<trace_id> (capped, expiring)
-- from which a node that did not run the execution replays its history.
-- A node subscribes to an execution's channel only while one of its
-- clients watches it.
--
-- Redis is optional at every moment: publishing is batched by a flusher
-- and never waits on an execution; while Redis is down, events are
-- dropped from the bridge (they still reach this node's subscribers) and
-- counted in stats.lost; the client and the subscriber reconnect by
-- themselves (chorus.db.redis).
--
--   bridge.new({url, stream_max = 1000, stream_ttl_s = 86400, max_queue = 10000})
--   bridge:start(hub) / bridge:stop()
--   bridge:publish(event); bridge:watch(trace); bridge:unwatch(trace)
--   bridge:history(trace) -> events | nil, err
--   bridge:connected() -> boolean; bridge.stats: published, lost, received
local redis = require "chorus.db.redis"
local json = require "chorus.json"
local sched = require "chorus.sched"
local log = require "chorus.log"

local M = {}

local Bridge = {}
Bridge.__index = Bridge

function M.new(opts)
  return setmetatable({
    url = opts.url, stream_max = opts.stream_max or 1000, ttl = opts.stream_ttl_s or 86400,
    max_queue = opts.max_queue or 10000, queue = {}, flushing = false, watched = {},
    stats = { published = 0, lost = 0, received = 0 }, stopping = false,
  }, Bridge)
end

local PREFIX, GLOBAL, STREAM = "chorus:events:", "chorus:events", "chorus:stream:"

-- Connects in the background until it succeeds (Redis may be down now).
local function connect_loop(self)
  while not self.stopping and not (self.client and self.sub) do
    if not self.client then self.client = redis.connect(self.url, { command_timeout_ms = 2000 }) end
    if not self.sub then
      local sub = redis.subscriber(self.url)
      if sub then
        sub:on_message(function(msg)
          self.stats.received = self.stats.received + 1
          local e = json.decode(msg.payload)
          if self.hub and e then self.hub:remote_event(e) end
        end)
        self.sub = sub
        for trace in pairs(self.watched) do self:watch_now(trace) end
      end
    end
    if not (self.client and self.sub) then
      if not sched.sleep(1000) then return end
    end
  end
end

function Bridge:start(hub)
  self.hub = hub
  self.task = sched.spawn_with({ detached = true }, connect_loop, self)
  return self
end

function Bridge:connected()
  return self.client ~= nil and self.client:connected() and self.sub ~= nil and self.sub:connected()
end

local function flush(self)
  while #self.queue > 0 and not self.stopping do
    local batch = self.queue
    self.queue = {}
    local client = self.client
    if not client or not client:connected() then
      self.stats.lost = self.stats.lost + #batch
    else
      local cmds = {}
      for _, e in ipairs(batch) do
        local payload = json.encode(e)
        if payload then
          local key = STREAM .. e.trace_id
          cmds[#cmds + 1] = { "PUBLISH", PREFIX .. e.trace_id, payload }
          cmds[#cmds + 1] = { "PUBLISH", GLOBAL, payload }
          cmds[#cmds + 1] = { "XADD", key, "MAXLEN", "~", tostring(self.stream_max), "*", "e", payload }
          cmds[#cmds + 1] = { "EXPIRE", key, tostring(self.ttl) }
        end
      end
      local res, err = client:pipeline(cmds)
      if res then
        self.stats.published = self.stats.published + #batch
      else
        self.stats.lost = self.stats.lost + #batch
        log.debug("events: %d events not published: %s", #batch, tostring(err))
      end
    end
  end
  self.flushing = false
end

function Bridge:publish(e)
  if self.stopping then return end
  local q = self.queue
  if #q >= self.max_queue then
    table.remove(q, 1)
    self.stats.lost = self.stats.lost + 1
  end
  q[#q + 1] = e
  if not self.flushing then
    self.flushing = true
    sched.spawn_with({ detached = true }, flush, self)
  end
end

function Bridge:watch_now(trace)
  if not self.sub then return end
  if trace == "*" then self.sub:subscribe(GLOBAL) else self.sub:subscribe(PREFIX .. trace) end
end

function Bridge:watch(trace)
  self.watched[trace] = true
  if self.sub then sched.spawn_with({ detached = true }, self.watch_now, self, trace) end
end

function Bridge:unwatch(trace)
  self.watched[trace] = nil
  local sub = self.sub
  if sub then
    sched.spawn_with({ detached = true }, function()
      if trace == "*" then sub:unsubscribe(GLOBAL) else sub:unsubscribe(PREFIX .. trace) end
    end)
  end
end

-- history(trace) -> events (oldest first) | nil, err
function Bridge:history(trace)
  if not self.client then return nil, "redis unavailable" end
  local rows, err = self.client:call("XRANGE", STREAM .. trace, "-", "+")
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    local fields = r[2]
    if type(fields) == "table" then
      for i = 1, #fields, 2 do
        if fields[i] == "e" then
          local e = json.decode(fields[i + 1])
          if e then out[#out + 1] = e end
        end
      end
    end
  end
  return out
end

function Bridge:stop()
  self.stopping = true
  if self.task then self.task:cancel() end
  if self.sub then self.sub:close() end
  if self.client then self.client:close() end
end

return M
