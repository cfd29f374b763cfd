-- chorus.events.hub: hands execution events to subscribers on this node
-- (WebSocket clients), whether the execution runs here (from the engine's
-- bus) or on another node (through the Redis bridge), and keeps a bounded
-- history per execution so a late subscriber can replay what it missed.
--
--   hub.new({bus, node_id, bridge, max_events = 1000, keep_finished = 1000})
--   hub:subscribe(trace_id | "*", fn) -> token   fn(event) must not block;
--     one that raises is logged and dropped
--   hub:unsubscribe(token)
--   hub:history(trace_id) -> events (oldest first) of an execution that
--     ran here, or nil
-- Events carry node = the node that ran the execution; a remote copy of
-- an event this node emitted itself is ignored.

local new_tab = require "table.new"
local log = require "chorus.log"

local M = {}

local Hub = {}
Hub.__index = Hub

local TERMINAL = require("chorus.engine.states").execution_terminal

function M.new(opts)
  local self = setmetatable({
    node_id = opts.node_id, bridge = opts.bridge,
    max_events = opts.max_events or 1000, keep_finished = opts.keep_finished or 1000,
    subs = {}, nsubs = 0, logs = {}, finished = {}, nfinished = 0,
    stats = { delivered = 0, remote = 0, errors = 0 },
  }, Hub)
  if opts.bus then
    opts.bus:subscribe(function(e) self:local_event(e) end)
  end
  return self
end

-- A subscriber that raises is dropped and logged; the others, and the
-- Redis bridge after them, still get the event (one raising used to stop
-- the event's way to every later subscriber and to the other nodes).
local function call(self, token, fn, e)
  local ok, err = pcall(fn, e)
  if not ok then
    self.stats.errors = self.stats.errors + 1
    log.error("events: a subscriber of %s failed on %s and was dropped: %s", tostring(token.trace),
      tostring(e.type), tostring(err))
    self:unsubscribe(token)
  end
end

local function deliver(self, e)
  local list = self.subs[e.trace_id]
  if list then
    for token, fn in pairs(list) do call(self, token, fn, e) end
  end
  local all = self.subs["*"]
  if all then
    for token, fn in pairs(all) do call(self, token, fn, e) end
  end
  self.stats.delivered = self.stats.delivered + 1
end

-- An event of an execution running here.
function Hub:local_event(e)
  e.node = self.node_id
  local trace = e.trace_id
  local log_ = self.logs[trace]
  if not log_ then
    -- At the size of a short execution's history (a one-step run has
    -- four events): no regrowth on the way.
    log_ = new_tab(8, 0)
    self.logs[trace] = log_
  end
  local n = #log_
  if n < self.max_events then log_[n + 1] = e end
  if e.type == "execution.status" and TERMINAL[e.status] then
    -- Keep the history of the last keep_finished finished executions: a
    -- ring of their trace ids, the n-th to finish in slot (n - 1) % keep
    -- + 1 (a queue whose keys kept climbing lived in the hash part and
    -- was rehashed as it moved).
    local keep = self.keep_finished
    if keep <= 0 then
      self.logs[trace] = nil
    else
      local f = self.nfinished + 1
      self.nfinished = f
      local slot = (f - 1) % keep + 1
      local gone = self.finished[slot]
      if gone and gone ~= trace then self.logs[gone] = nil end
      self.finished[slot] = trace
    end
  end
  if self.nsubs > 0 then deliver(self, e) end
  if self.bridge then self.bridge:publish(e) end
end

-- An event that came from another node.
function Hub:remote_event(e)
  if type(e) ~= "table" or type(e.trace_id) ~= "string" or e.node == self.node_id then return end
  self.stats.remote = self.stats.remote + 1
  if self.nsubs > 0 then deliver(self, e) end
end

function Hub:subscribe(trace, fn)
  local list = self.subs[trace]
  if not list then
    list = {}
    self.subs[trace] = list
    if self.bridge then self.bridge:watch(trace) end
  end
  local token = { trace = trace }
  list[token] = fn
  self.nsubs = self.nsubs + 1
  return token
end

function Hub:unsubscribe(token)
  local list = self.subs[token.trace]
  if not list or not list[token] then return end
  list[token] = nil
  self.nsubs = self.nsubs - 1
  if next(list) == nil then
    self.subs[token.trace] = nil
    if self.bridge then self.bridge:unwatch(token.trace) end
  end
end

function Hub:history(trace)
  return self.logs[trace]
end

return M
