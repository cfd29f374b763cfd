-- chorus.json: JSON through lua-cjson (Debian's lua-cjson 2.1.0), with
-- errors as values and a canonical encoder.
--
--   decode(s) -> value | nil, "invalid JSON: ..."   (null is json.null)
--   encode(v) -> string | nil, err
--   canonical(v) -> string: keys sorted, so equal values give equal text
--                   (consensus votes, content hashes)
--   array(t) -> t marked to encode as a JSON array even when empty (decode
--                marks the empty arrays it reads: [] stays [])
--   is_array(t) -> true when t is a sequence (or marked, or empty)
--   pretty(v) -> string | nil, err: canonical, indented two spaces a level
local cjson = require "cjson.safe"

local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local concat, sort, format = table.concat, table.sort, string.format
local getmetatable, setmetatable = getmetatable, setmetatable
local huge, floor = math.huge, math.floor

-- Request bodies are bounded elsewhere; nesting is bounded here so a deep
-- document is an error value, not a C stack overflow.
local MAX_DEPTH = 128
cjson.decode_max_depth(MAX_DEPTH)
cjson.encode_max_depth(MAX_DEPTH)
-- Sparse Lua arrays become objects instead of raising.
cjson.encode_sparse_array(true)
-- 14 significant digits: the most lua-cjson 2.1.0 allows (default 14).
cjson.encode_number_precision(14)
-- JSON has no NaN, Infinity or hex numbers (cjson accepts them by default):
-- a decoded value must encode again.
cjson.decode_invalid_numbers(false)

local M = { null = cjson.null, MAX_DEPTH = MAX_DEPTH }

local ARRAY_MT = { __jsontype = "array" }

function M.array(t)
  return setmetatable(t or {}, ARRAY_MT)
end

local decode_raw, encode_raw = cjson.decode, cjson.encode

-- has_huge(v): does v hold a number that overflowed to +-inf?
local function has_huge(v, depth)
  if type(v) == "number" then return v == huge or v == -huge end
  if type(v) ~= "table" or depth > MAX_DEPTH then return false end
  for _, x in pairs(v) do
    if has_huge(x, depth + 1) then return true end
  end
  return false
end

-- Empty arrays. lua-cjson 2.1.0 decodes [] as a plain empty table, which
-- encodes back as {}: an input's or a stored output's empty list would
-- come back as an object. A text holding an empty array outside a string
-- is decoded with each [] replaced by a sentinel object, and those become
-- marked arrays. Texts without one (nearly all) pay one memchr-like scan
-- per "[" they hold.
local find, sub, byte = string.find, string.sub, string.byte
local EMPTY_KEY, EMPTY_TEXT = "\0[]", '{"\\u0000[]":0}'

local function has_empty_array(s)
  local i = find(s, "[", 1, true)
  while i do
    -- The next byte settles it, unless it is whitespace.
    local b = byte(s, i + 1)
    if b == 93 or ((b == 32 or b == 10 or b == 13 or b == 9) and find(s, "^%s*%]", i + 1)) then return true end
    i = find(s, "[", i + 1, true)
  end
  return false
end

-- with_sentinels(s) -> s with every empty array outside strings replaced
-- by the sentinel | nil when there is none (or the text is malformed:
-- cjson then says where, on the original).
local function with_sentinels(s)
  local out, n, pos, from = {}, 0, 1, 1
  while true do
    local i = find(s, '["%[]', pos)
    if not i then break end
    if byte(s, i) == 34 then
      local j = i + 1
      while true do
        local q = find(s, '["\\]', j)
        if not q then return nil end
        if byte(s, q) == 92 then
          j = q + 2
        else
          pos = q + 1
          break
        end
      end
    else
      local _, close = find(s, "^%s*%]", i + 1)
      if close then
        out[n + 1], out[n + 2] = sub(s, from, i - 1), EMPTY_TEXT
        n = n + 2
        from, pos = close + 1, close + 1
      else
        pos = i + 1
      end
    end
  end
  if n == 0 then return nil end
  out[n + 1] = sub(s, from)
  return concat(out)
end

local function is_sentinel(t)
  local k, v = next(t)
  return k == EMPTY_KEY and v == 0 and next(t, k) == nil
end

local function mark_arrays(v)
  for k, x in pairs(v) do
    if type(x) == "table" then
      if is_sentinel(x) then v[k] = setmetatable({}, ARRAY_MT) else mark_arrays(x) end
    end
  end
  return v
end

local function decode_marked(s)
  local text = has_empty_array(s) and with_sentinels(s)
  if not text then return decode_raw(s) end
  local v = decode_raw(text)
  if type(v) ~= "table" then return decode_raw(s) end -- malformed: the original's error
  if is_sentinel(v) then return setmetatable({}, ARRAY_MT) end
  return mark_arrays(v)
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "invalid JSON: expected a string, got " .. type(s) end
  local v, err = decode_marked(s)
  if v == nil and err then return nil, "invalid JSON: " .. tostring(err) end
  -- A number beyond the double range decodes as inf. Walking the value
  -- costs a tenth of scanning the text for long exponents and digit runs
  -- first (0.4 against 12 us for a 300-byte chat completion, 27 against
  -- 740 us for 21 KB): decode runs for every streamed LLM chunk.
  if type(v) == "table" and has_huge(v, 1) or v == huge or v == -huge then
    return nil, "invalid JSON: a number is out of range"
  end
  return v
end

-- is_array(t): a table whose keys are exactly 1..n (n >= 1), or marked.
function M.is_array(t)
  if getmetatable(t) == ARRAY_MT then return true end
  local n = #t
  if n == 0 then return next(t) == nil end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

-- Empty tables marked as arrays need our own pass: cjson 2.1.0 encodes
-- every empty table as {}. Only documents holding marked empty arrays pay.
local function has_marked_empty(v, depth)
  if depth > MAX_DEPTH then return false end
  for _, x in pairs(v) do
    if type(x) == "table" then
      if getmetatable(x) == ARRAY_MT and next(x) == nil then return true end
      if has_marked_empty(x, depth + 1) then return true end
    end
  end
  return false
end

local canonical

-- The fast path (runtime/rt_lua_json.c): cjson's bytes for the values it
-- covers, nil for the others (a marked empty array among them).
local fast_encode = require("chorus.native").json_encode

function M.encode(v)
  local fast = fast_encode(v)
  if fast then return fast end
  if type(v) == "table" then
    if getmetatable(v) == ARRAY_MT and next(v) == nil then return "[]" end
    if has_marked_empty(v, 1) then
      local ok, s = pcall(canonical, v, 1)
      if not ok then return nil, tostring(s) end
      return s
    end
  end
  local s, err = encode_raw(v)
  if s == nil then return nil, tostring(err) end
  return s
end

-- encode_flat(v) -> string | nil, err: cjson alone, for values known to
-- hold no marked empty array (flat records): no extra Lua pass.
function M.encode_flat(v)
  local fast = fast_encode(v)
  if fast then return fast end
  local s, err = encode_raw(v)
  if s == nil then return nil, tostring(err) end
  return s
end

local function num(x)
  if x ~= x or x == huge or x == -huge then error("cannot encode a non-finite number", 0) end
  if floor(x) == x and x >= -2^53 and x <= 2^53 then return format("%d", x) end
  return format("%.17g", x)
end

local function str(s)
  return encode_raw(s)
end

-- canonical(v, depth): sorted keys, integers without exponent, arrays kept.
function canonical(v, depth)
  local t = type(v)
  if t == "string" then return str(v) end
  if t == "number" then return num(v) end
  if t == "boolean" then return v and "true" or "false" end
  if v == nil or v == cjson.null then return "null" end
  if t ~= "table" then error("cannot encode a " .. t, 0) end
  depth = depth or 1
  if depth > MAX_DEPTH then error("nesting deeper than " .. MAX_DEPTH, 0) end
  if M.is_array(v) and (next(v) ~= nil or getmetatable(v) == ARRAY_MT) then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = canonical(x, depth + 1) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = str(k) .. ":" .. canonical(x, depth + 1)
  end
  return "{" .. concat(parts, ",") .. "}"
end

-- encode_lenient(v) -> string: v encoded; when v as a whole cannot be
-- (a record stored before the limits, nested too deep), each field or
-- item is encoded on its own, within the nesting left at its depth, and
-- one that still cannot be becomes {"_unencodable": why}: one bad part
-- never hides the rest of an answer.
-- repair(v) -> v with every string (keys too) made valid UTF-8 without
-- NUL (U+FFFD for each bad byte); tables are copied only along the way to
-- a string that needed it.
function M.repair(v)
  local t = type(v)
  if t == "string" then return require("chorus.native").utf8_repair(v) end
  if t ~= "table" then return v end
  local out, changed = {}, false
  for k, x in pairs(v) do
    local k2, x2 = type(k) == "string" and M.repair(k) or k, M.repair(x)
    if k2 ~= k or x2 ~= x then changed = true end
    out[k2] = x2
  end
  if not changed then return v end
  return setmetatable(out, getmetatable(v))
end

function M.encode_lenient(v, depth)
  depth = depth or 0
  local room = MAX_DEPTH - depth
  local ok, bad, why = require("chorus.native").value_check(v, huge, room)
  if ok then
    if bad > 0 then v = M.repair(v) end
    local s, err = M.encode(v)
    if s then return s end
    why = err
  end
  local fix = require("chorus.native").utf8_repair
  if type(v) ~= "table" or depth >= 3 then return encode_raw({ _unencodable = fix(tostring(why)) }) end
  local parts = {}
  if M.is_array(v) then
    for i, x in ipairs(v) do parts[i] = M.encode_lenient(x, depth + 1) end
    return "[" .. concat(parts, ",") .. "]"
  end
  for k, x in pairs(v) do
    parts[#parts + 1] = str(fix(tostring(k))) .. ":" .. M.encode_lenient(x, depth + 1)
  end
  return "{" .. concat(parts, ",") .. "}"
end

-- canonical(v) -> string | nil, err
function M.canonical(v)
  local ok, s = pcall(canonical, v, 1)
  if not ok then return nil, s end
  return s
end

local function pretty(v, depth, indent)
  if type(v) ~= "table" then return canonical(v, depth) end
  if depth > MAX_DEPTH then error("nesting deeper than " .. MAX_DEPTH, 0) end
  local inner = indent .. "  "
  local parts = {}
  if M.is_array(v) and (next(v) ~= nil or getmetatable(v) == ARRAY_MT) then
    if next(v) == nil then return "[]" end
    for i, x in ipairs(v) do parts[i] = inner .. pretty(x, depth + 1, inner) end
    return "[\n" .. concat(parts, ",\n") .. "\n" .. indent .. "]"
  end
  if next(v) == nil then return "{}" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = inner .. str(k) .. ": " .. pretty(x, depth + 1, inner)
  end
  return "{\n" .. concat(parts, ",\n") .. "\n" .. indent .. "}"
end

-- pretty(v) -> string | nil, err: keys sorted (equal values, equal text),
-- one member or item a line, indented two spaces a level.
function M.pretty(v)
  local ok, s = pcall(pretty, v, 1, "")
  if not ok then return nil, s end
  return s
end

return M
