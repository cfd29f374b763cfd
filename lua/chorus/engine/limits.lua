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

-- The common case in Lua, where LuaJIT compiles it: a step's output is
-- mostly a few keys of plain text and numbers, and native.value_check
-- walks those through the C API (a call that stops the trace, an API
-- call per key and value) at about four times the cost. small_bytes
-- counts exactly what native.value_check counts, and gives up (nil) at
-- anything else, for the C walk to decide with its error paths and its
-- table of large values: SMALL bytes or more (which native.value_check
-- would remember: RT_VALUE_SEEN_MIN_BYTES), a table deeper than
-- SMALL_DEPTH, text with a NUL or a byte over 127 (it may need repair),
-- a non-finite number, a key neither text nor number, anything else JSON
-- cannot carry. A cycle passes the byte budget and gives up too.
local SMALL, SMALL_DEPTH = 4096, 16
local null = json.null
local type, next, find, floor, abs, log10, huge = type, next, string.find, math.floor, math.abs, math.log10, math.huge

-- Text found plain (no NUL, no byte over 127), short strings only and at
-- most PLAIN_MAX of them: keys and values recur from one output to the
-- next, and a look-up here is cheaper than a pattern search.
local PLAIN_MAX, PLAIN_LEN = 4096, 64
local plain, plain_n = {}, 0

-- Longer text is scanned in C (chorus_text_plain, through the FFI, which
-- compiles into a trace where a classic C function would end it); a
-- pattern search costs ~50 instructions a byte.
local long_plain = function(s) return not find(s, "[%z\128-\255]") end
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int chorus_text_plain(const char *s, size_t n);")
    local C = ffi.C
    if pcall(function() return C.chorus_text_plain end) then
      long_plain = function(s) return C.chorus_text_plain(s, #s) ~= 0 end
    end
  end
end

local function is_plain(s)
  if plain[s] then return true end
  if #s > PLAIN_LEN then return long_plain(s) end
  if find(s, "[%z\128-\255]") then return false end
  if #s <= PLAIN_LEN then
    if plain_n >= PLAIN_MAX then plain, plain_n = {}, 0 end
    plain[s], plain_n = true, plain_n + 1
  end
  return true
end

-- As native.value_check sizes a number: its digits when it is whole.
local function number_bytes(x)
  if x == floor(x) and abs(x) < 1e15 then
    local a = abs(x)
    return (a < 10 and 1 or floor(log10(a)) + 1) + (x < 0 and 1 or 0)
  end
  return 24
end

-- small_bytes(v, depth, n, budget) -> n plus v's bytes | nil (give up)
local function small_bytes(v, depth, n, budget)
  local tv = type(v)
  if tv == "string" then
    if not is_plain(v) then return nil end
    n = n + #v + 2
  elseif tv == "number" then
    if v ~= v or v == huge or v == -huge then return nil end
    n = n + number_bytes(v)
  elseif tv == "table" then
    if depth >= SMALL_DEPTH then return nil end
    n = n + 2
    for k, x in next, v do
      local tk = type(k)
      if tk == "string" then
        if not is_plain(k) then return nil end
        n = n + #k + 4 -- quotes, ':' and ','
      elseif tk == "number" and k ~= huge and k ~= -huge then
        n = n + 1
      else
        return nil
      end
      if n > budget then return nil end
      n = small_bytes(x, depth + 1, n, budget)
      if not n then return nil end
    end
  elseif tv == "boolean" then
    n = n + 5
  elseif v == nil or (tv == "userdata" and v == null) then
    n = n + 4
  else
    return nil
  end
  if n > budget then return nil end
  return n
end
M._small_bytes = small_bytes -- for its spec

-- check(v, max_bytes) -> v (repaired if needed), bytes, repaired | nil, kind, message
-- kind: "too_large" | "too_deep" | "not_json"
function M.check(v, max_bytes)
  local small = small_bytes(v, 0, 0, max_bytes < SMALL and max_bytes or SMALL - 1)
  if small then return v, small, false end
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
