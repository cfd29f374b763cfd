-- chorus.schema: declarative checks for JSON-shaped values, shared by the
-- config validator and by scripts (an agent's `schema` describes its
-- params, a strategy's `schema` the extra settings it reads).
--
-- A schema is a table describing one value:
--   { type = "string"|"number"|"integer"|"boolean"|"object"|"array"|"any"
--            or a list of those (the first that fits wins),
--     required = bool, default = v, description = "...",
--     enum = {...}, min = n, max = n,            -- numbers
--     min_len = n, max_len = n, pattern = "lua pattern",   -- strings
--     fields = { name = schema, ... }, additional = bool | schema,  -- objects
--     items = schema, min_items = n, max_items = n,        -- arrays
--     normalize = function(v) -> v }             -- runs before the checks
-- A script's `schema` is an object schema; `{ fields = {...} }` alone is
-- enough (type "object" is implied).
--
-- check(value, schema, path, errors) -> the value with defaults filled in,
-- appending {path = "a.b[0]", message = "..."} to errors for each problem:
-- all problems are reported, not just the first.
local json = require "chorus.json"

local type, pairs, ipairs, tostring, floor = type, pairs, ipairs, tostring, math.floor
local concat, sort, format = table.concat, table.sort, string.format

local M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true,
  object = true, array = true, any = true }
local KNOWN_KEYS = { type = true, required = true, default = true, description = true,
  enum = true, min = true, max = true, min_len = true, max_len = true, pattern = true,
  fields = true, additional = true, items = true, min_items = true, max_items = true,
  normalize = true, example = true }

local null = json.null

-- kind(v) -> the schema type name a Lua value has (JSON's view of it)
local function kind(v)
  local t = type(v)
  if t == "number" then return floor(v) == v and "integer" or "number" end
  if t == "table" then
    if next(v) == nil then return "empty" end
    return json.is_array(v) and "array" or "object"
  end
  return t
end
M.kind = kind

local function fits(want, v)
  local k = kind(v)
  if want == "any" then return true end
  if want == k then return true end
  if want == "number" and k == "integer" then return true end
  if k == "empty" and (want == "object" or want == "array") then return true end
  return false
end

local function describe(v)
  local k = kind(v)
  if k == "empty" then return "an empty table" end
  if k == "string" then
    local s = #v > 40 and (v:sub(1, 40) .. "...") or v
    return format("string %q", s)
  end
  if k == "integer" or k == "number" then return format("%s %s", k == "integer" and "integer" or "number", tostring(v)) end
  if k == "boolean" then return tostring(v) end
  return k == "array" and "an array" or k == "object" and "an object" or k
end
M.describe = describe

local function join_path(path, key)
  if type(key) == "number" then return format("%s[%d]", path, key - 1) end
  if path == "" then return key end
  return path .. "." .. key
end
M.join_path = join_path

local function add(errors, path, msg, ...)
  errors[#errors + 1] = { path = path == "" and "(root)" or path, message = format(msg, ...) }
end

local ARTICLE = { string = "a string", number = "a number", integer = "an integer",
  boolean = "a boolean", object = "an object", array = "an array", any = "any value" }

local function type_list(t)
  if type(t) ~= "table" then t = { t or "any" } end
  local words = {}
  for i, x in ipairs(t) do words[i] = ARTICLE[x] or x end
  return concat(words, " or ")
end

local check

-- Unknown keys are reported in a stable order (module-level comparator:
-- a closure per call would keep LuaJIT from compiling check_object).
local function by_string(a, b) return tostring(a) < tostring(b) end

local function check_object(v, s, path, errors)
  local out = {}
  local fields = s.fields or {}
  for name, fs in pairs(fields) do
    local x = v[name]
    if x == null then x = nil end
    if x == nil then
      if fs.required then
        add(errors, join_path(path, name), "is required")
      elseif fs.default ~= nil then
        local d = fs.default
        if type(d) == "table" then d = M.copy(d) end
        out[name] = d
      end
    else
      out[name] = check(x, fs, join_path(path, name), errors)
    end
  end
  local extra = {}
  for name, x in pairs(v) do
    if fields[name] == nil then extra[#extra + 1] = name end
  end
  sort(extra, by_string)
  for _, name in ipairs(extra) do
    local x = v[name]
    if type(name) ~= "string" then
      add(errors, path, "keys must be strings")
    elseif s.additional == true then
      out[name] = x
    elseif type(s.additional) == "table" then
      out[name] = check(x, s.additional, join_path(path, name), errors)
    else
      local known = {}
      for k in pairs(fields) do known[#known + 1] = k end
      sort(known)
      add(errors, join_path(path, name), "unknown field (known: %s)", concat(known, ", "))
    end
  end
  return out
end

local function check_array(v, s, path, errors)
  local n = #v
  if s.min_items and n < s.min_items then
    add(errors, path, "needs at least %d item%s, got %d", s.min_items, s.min_items == 1 and "" or "s", n)
  end
  if s.max_items and n > s.max_items then
    add(errors, path, "allows at most %d items, got %d", s.max_items, n)
  end
  local out = json.array({})
  for i = 1, n do
    local x = v[i]
    if s.items then
      if x == null then
        add(errors, join_path(path, i), "must not be null")
      else
        x = check(x, s.items, join_path(path, i), errors)
      end
    end
    out[i] = x
  end
  return out
end

-- check(v, s, path, errors) -> normalized v
function check(v, s, path, errors)
  if s.normalize then v = s.normalize(v) end
  local want = s.type or (s.fields and "object") or "any"
  local chosen
  if type(want) == "table" then
    for _, w in ipairs(want) do
      if fits(w, v) then chosen = w break end
    end
  elseif fits(want, v) then
    chosen = want
  end
  if not chosen then
    add(errors, path, "must be %s, got %s", type_list(want), describe(v))
    return v
  end
  if s.enum then
    local okv = false
    for _, e in ipairs(s.enum) do if e == v then okv = true break end end
    if not okv then
      local names = {}
      for i, e in ipairs(s.enum) do names[i] = tostring(e) end
      add(errors, path, "must be one of %s, got %s", concat(names, ", "), describe(v))
      return v
    end
  end
  if chosen == "number" or chosen == "integer" then
    if v ~= v or v == math.huge or v == -math.huge then
      add(errors, path, "must be a finite number")
    elseif s.min and v < s.min then
      add(errors, path, "must be >= %s, got %s", tostring(s.min), tostring(v))
    elseif s.max and v > s.max then
      add(errors, path, "must be <= %s, got %s", tostring(s.max), tostring(v))
    end
  elseif chosen == "string" then
    if s.min_len and #v < s.min_len then
      add(errors, path, s.min_len == 1 and "must not be empty" or "must be at least %d characters", s.min_len)
    elseif s.max_len and #v > s.max_len then
      add(errors, path, "must be at most %d characters, got %d", s.max_len, #v)
    elseif s.pattern and not v:match(s.pattern) then
      add(errors, path, "has invalid characters (%s)", s.pattern_help or "see the documentation")
    end
  elseif chosen == "object" then
    return check_object(v, s, path, errors)
  elseif chosen == "array" then
    return check_array(v, s, path, errors)
  end
  return v
end
M.check = check

-- copy(t): a deep copy of a JSON-shaped table (defaults are never shared).
function M.copy(t)
  if type(t) ~= "table" then return t end
  local out = setmetatable({}, getmetatable(t))
  for k, v in pairs(t) do out[k] = M.copy(v) end
  return out
end

-- check_schema(s) -> true | nil, err: is s itself a valid schema?
function M.check_schema(s, path)
  path = path or "schema"
  if type(s) ~= "table" then return nil, path .. " must be a table" end
  for k in pairs(s) do
    if not KNOWN_KEYS[k] and k ~= "pattern_help" then
      return nil, format("%s: unknown key '%s'", path, tostring(k))
    end
  end
  local t = s.type
  if t ~= nil then
    local list = type(t) == "table" and t or { t }
    for _, x in ipairs(list) do
      if not TYPES[x] then return nil, format("%s.type: unknown type '%s'", path, tostring(x)) end
    end
  end
  if s.fields ~= nil then
    if type(s.fields) ~= "table" then return nil, path .. ".fields must be a table" end
    for name, fs in pairs(s.fields) do
      local ok, err = M.check_schema(fs, path .. ".fields." .. tostring(name))
      if not ok then return nil, err end
    end
  end
  if type(s.additional) == "table" then
    local ok, err = M.check_schema(s.additional, path .. ".additional")
    if not ok then return nil, err end
  end
  if s.items ~= nil then
    local ok, err = M.check_schema(s.items, path .. ".items")
    if not ok then return nil, err end
  end
  if s.enum ~= nil and type(s.enum) ~= "table" then return nil, path .. ".enum must be a list" end
  if s.normalize ~= nil and type(s.normalize) ~= "function" then
    return nil, path .. ".normalize must be a function"
  end
  return true
end

-- describe_schema(s) -> a JSON-ready description (for the registry API)
function M.describe_schema(s)
  if type(s) ~= "table" then return nil end
  local out = { type = s.type or (s.fields and "object") or nil, required = s.required or nil,
    default = s.default, description = s.description, enum = s.enum, min = s.min, max = s.max }
  if s.fields then
    out.fields = {}
    for name, fs in pairs(s.fields) do out.fields[name] = M.describe_schema(fs) end
  end
  if s.items then out.items = M.describe_schema(s.items) end
  return out
end

return M
