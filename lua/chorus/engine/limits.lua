-- chorus.engine.limits: what one execution may hold, checked where values enter
-- it (the execution input at the door, each step output as it is
-- produced, a strategy's own result), so that no record can outgrow what
-- the stores, the encoder and the API can carry, and no request can make
-- the server work more than linearly in what it sent.
--
-- Settings (per config, with defaults): max_input_bytes (1 MiB),
-- max_output_bytes (1 MiB, each step output), max_execution_bytes
-- (16 MiB: input plus every output). Sizes are what a value takes as
-- JSON, each occurrence of a shared table counted again, as an encoder
-- writes it; the walk stops as soon as a limit is passed.
--
-- Depth: a value may nest MAX_DEPTH levels. Records wrap values a few
-- levels deeper (record.steps[i].output, a list item's metadata), and
-- the JSON encoder stops at json.MAX_DEPTH: the room between the two is
-- what keeps every accepted value readable back.
--
-- Text: a string with a NUL byte or malformed UTF-8 is repaired (U+FFFD)
-- before it reaches a store: PostgreSQL refuses both in jsonb, and JSON
-- answers carrying a stray byte break clients.
local native = require "chorus.native"
local json = require "chorus.json"

local value_check = native.value_check
local format = string.format

local M = {}

M.MAX_DEPTH = 100
M.DEFAULTS = {
  max_steps = 1000,
  max_input_bytes = 1048576,
  max_output_bytes = 1048576,
  max_execution_bytes = 16 * 1048576,
}
-- What a config may set them to.
M.CEILINGS = {
  max_steps = 10000,
  max_input_bytes = 64 * 1048576,
  max_output_bytes = 64 * 1048576,
  max_execution_bytes = 256 * 1048576,
}

assert(M.MAX_DEPTH + 20 <= json.MAX_DEPTH, "records need room to wrap values")

-- setting(settings, name) -> the limit in force
function M.setting(settings, name)
  local v = settings and settings[name]
  if type(v) == "number" then return v end
  return M.DEFAULTS[name]
end

local function human(n)
  if n >= 1048576 and n % 1048576 == 0 then return format("%d MiB", n / 1048576) end
  if n >= 1024 and n % 1024 == 0 then return format("%d KiB", n / 1024) end
  return format("%d bytes", n)
end
M.human = human

-- repair(v): see chorus.json (strings made valid UTF-8 without NUL).
local repair = json.repair
M.repair = repair

-- Tables checked lately (weak keys; native.value_check adds a checked
-- value of 4 KB or more): a step's output that carries its dependencies'
-- outputs (an agent that returns its input) is walked for its own part
-- only, not again for theirs at every step. A new table every SEEN_SPAN
-- checks: a weak table keeps the size it grew to, and every collection
-- cycle walks it; a chain pays one full walk per span.
local SEEN_SPAN = 256
local seen, seen_n = setmetatable({}, { __mode = "k" }), 0

-- check(v, max_bytes) -> v (repaired if needed), bytes, repaired | nil, kind, message
-- kind: "too_large" | "too_deep" | "not_json"
function M.check(v, max_bytes)
  seen_n = seen_n + 1
  if seen_n > SEEN_SPAN then seen, seen_n = setmetatable({}, { __mode = "k" }), 1 end
  local bytes, bad, msg = value_check(v, max_bytes, M.MAX_DEPTH, seen)
  if not bytes then return nil, bad, msg end
  if bad > 0 then return repair(v), bytes, true end
  return v, bytes, false
end

-- check_input(input, settings) -> input, bytes | nil, message (for a 422)
function M.check_input(input, settings)
  local max = M.setting(settings, "max_input_bytes")
  local v, bytes, msg = M.check(input, max)
  if not v then
    if bytes == "too_large" then
      return nil, format("the input is larger than %s (settings.max_input_bytes)", human(max))
    end
    return nil, "the input " .. msg
  end
  return v, bytes
end

return M
