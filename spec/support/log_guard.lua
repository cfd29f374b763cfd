-- spec/support/log_guard.lua: a spec fails when it logs an error it did
-- not say it expects (`chorus test` loads this busted helper). Specs that
-- provoke one on purpose say so first:
--   require("spec.support.log_guard").expect("not archived")  -- a pattern
-- (plain text match); it holds for the rest of that spec only.
local busted = require "busted"
local log = require "chorus.log"

local M = {}

local seen, expected = {}, {}

function M.expect(text)
  expected[#expected + 1] = text
end

log.observe = function(level, msg)
  if level == "error" then seen[#seen + 1] = msg end
end

local function unexpected()
  for _, msg in ipairs(seen) do
    local ok = false
    for _, text in ipairs(expected) do
      if msg:find(text, 1, true) then ok = true break end
    end
    if not ok then return msg end
  end
end

-- expect() may be called in a before_each (it runs before the start).
busted.subscribe({ "test", "start" }, function(element)
  seen = {}
  local run = element.run
  if type(run) ~= "function" then return nil, true end
  element.run = function(...)
    run(...)
    local msg = unexpected()
    if msg then error("the spec logged an error it does not expect: " .. msg, 0) end
  end
  return nil, true
end)

busted.subscribe({ "test", "end" }, function()
  seen, expected = {}, {}
  return nil, true
end)

package.loaded["spec.support.log_guard"] = M
return M
