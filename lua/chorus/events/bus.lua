-- chorus.events.bus: the local event bus. Every state transition of an
-- execution or a step is emitted here; the terminal progress view, the
-- WebSocket server and the Redis bridge subscribe.
--
-- Subscribers run synchronously inside the emitting task and must not
-- block: a subscriber that needs I/O queues the event and returns. An error
-- in one subscriber is logged and never reaches the emitter or the others.
local log = require "chorus.log"

local pcall, next = pcall, next

local Bus = {}
Bus.__index = Bus

local M = {}

function M.new()
  return setmetatable({ subs = {}, n = 0, errors = 0, emitted = 0 }, Bus)
end

-- subscribe(fn) -> token; fn(event) for every event.
function Bus:subscribe(fn)
  assert(type(fn) == "function", "subscriber must be a function")
  local token = {}
  self.subs[token] = fn
  self.n = self.n + 1
  return token
end

function Bus:unsubscribe(token)
  if self.subs[token] then
    self.subs[token] = nil
    self.n = self.n - 1
  end
end

-- has_subscribers() lets hot paths skip building events nobody reads.
function Bus:has_subscribers()
  return self.n > 0
end

function Bus:emit(event)
  self.emitted = self.emitted + 1
  if self.n == 0 then return end
  for token, fn in next, self.subs do
    local ok, err = pcall(fn, event)
    if not ok then
      self.errors = self.errors + 1
      log.error("event subscriber failed on %s: %s", tostring(event.type), tostring(err))
      if err == nil then self.subs[token] = nil end
    end
  end
end

return M
