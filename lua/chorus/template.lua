-- chorus.template: {{placeholders}} filled from a step's input, and the
-- paths they name. Used by agents that build prompts, URLs and bodies
-- from the step input (llm, http, tws), and by the config validator to
-- check, when a config is created, that a placeholder names something
-- the step can have.
--
--   lookup(value, path) -> found value | nil, err
--     path: "job_name", "dep_status.status", "items[0].name",
--     "dep_fetch.items.0" — dots for fields, [n] or .n for array items
--     (0-based, as in JSON paths and validation errors)
--   parse_path(path) -> {segment...} | nil, err  (numbers are 0-based)
--   render(text, input [, what]) -> string | nil, err
--     every {{ path }} replaced by the value at path (strings as they are,
--     numbers and booleans as text, tables as JSON); a missing value is an
--     error naming the placeholder and `what` (e.g. "params.prompt")
--   render_value(v, input [, what]) -> value | nil, err
--     strings rendered; a string that is exactly one placeholder gives the
--     value itself (a table stays a table); tables rendered recursively
--   placeholders(v) -> {path...} every placeholder in a string or, deeply,
--     in a table's strings (first occurrence order, no duplicates)
local json = require "chorus.json"

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local find, sub, match, format = string.find, string.sub, string.match, string.format
local concat = table.concat

local M = {}

local PLACEHOLDER = "{{%s*(.-)%s*}}"

-- Paths are parsed once each (templates repeat across executions); the
-- cache is dropped when it grows past a bound (paths come from configs).
local parsed_n, parsed_count = {}, 0

function M.parse_path(path)
  if type(path) ~= "string" or path == "" then return nil, "empty path" end
  local cached = parsed_n[path]
  if cached then return cached end
  local segs, pos, len = {}, 1, #path
  while pos <= len do
    local name, stop = match(path, "^([%a_][%w_%-]*)()", pos)
    if name then
      segs[#segs + 1] = name
      pos = stop
    else
      local idx
      idx, stop = match(path, "^%[(%d+)%]()", pos)
      if not idx and #segs > 0 then idx, stop = match(path, "^(%d+)()", pos) end
      if not idx then
        return nil, format("unexpected %q at position %d of path %q", sub(path, pos, pos), pos, path)
      end
      segs[#segs + 1] = tonumber(idx)
      pos = stop
    end
    if pos <= len then
      local c = sub(path, pos, pos)
      if c == "." then
        pos = pos + 1
        if pos > len then return nil, format("path %q ends with '.'", path) end
      elseif c ~= "[" then
        return nil, format("unexpected %q at position %d of path %q", c, pos, path)
      end
    end
  end
  if type(segs[1]) ~= "string" then return nil, format("path %q must start with a name", path) end
  if parsed_count >= 10000 then parsed_n, parsed_count = {}, 0 end
  parsed_n[path], parsed_count = segs, parsed_count + 1
  return segs
end

local function describe_seg(seg)
  return type(seg) == "number" and ("[" .. seg .. "]") or seg
end

-- lookup(value, path) -> value | nil, err
function M.lookup(value, path)
  local segs, err = M.parse_path(path)
  if not segs then return nil, err end
  local cur = value
  for i, seg in ipairs(segs) do
    if type(cur) ~= "table" or cur == json.null then
      return nil, format("no value for {{%s}} (%s is not an object or array)", path,
        i == 1 and "the input" or describe_seg(segs[i - 1]))
    end
    local v
    if type(seg) == "number" then v = cur[seg + 1] else v = cur[seg] end
    if v == nil then return nil, format("no value for {{%s}} in the step input", path) end
    cur = v
  end
  return cur
end

local function text_of(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == math.floor(v) and v >= -2^53 and v <= 2^53 then return format("%d", v) end
    return tostring(v)
  end
  if t == "boolean" then return tostring(v) end
  if v == json.null then return "null" end
  local s = json.encode(v)
  return s or tostring(v)
end

-- A template's text split once into literal parts (strings) and
-- placeholders ({path}), the same matches gsub would make: an agent
-- renders the same prompt for every execution, and a loop over parts is
-- compiled where gsub with a callback is not. Bounded: texts built anew
-- for each call (a handler's own prompts) must not pile up; a long text
-- is split each time (its cost is in its length anyway).
local compiled, compiled_count, compiled_bytes = {}, 0, 0
local CACHE_TEXTS, CACHE_BYTES, CACHE_TEXT_MAX = 10000, 1024 * 1024, 16 * 1024

local function compile(text)
  local parts, n, init = {}, 0, 1
  while true do
    local s, e, path = find(text, PLACEHOLDER, init)
    if not s then break end
    if s > init then n = n + 1; parts[n] = sub(text, init, s - 1) end
    n = n + 1
    parts[n] = { path }
    init = e + 1
  end
  if init <= #text then n = n + 1; parts[n] = sub(text, init) end
  if #text <= CACHE_TEXT_MAX then
    if compiled_count >= CACHE_TEXTS or compiled_bytes + #text > CACHE_BYTES then
      compiled, compiled_count, compiled_bytes = {}, 0, 0
    end
    compiled[text], compiled_count, compiled_bytes = parts, compiled_count + 1, compiled_bytes + #text
  end
  return parts
end

-- render(text, input, what) -> string | nil, err
function M.render(text, input, what)
  if type(text) ~= "string" then return text end
  local parts = compiled[text]
  if not parts then
    if not find(text, "{{", 1, true) then return text end
    parts = compile(text)
  end
  local out = {}
  for i = 1, #parts do
    local p = parts[i]
    if type(p) == "string" then
      out[i] = p
    else
      local v, err = M.lookup(input, p[1])
      if v == nil then return nil, format("%s: %s", what and ("template " .. what) or "template", err) end
      out[i] = text_of(v)
    end
  end
  return concat(out)
end

-- render_value(v, input, what) -> value | nil, err
function M.render_value(v, input, what)
  if type(v) == "string" then
    local only = match(v, "^{{%s*(.-)%s*}}$")
    if only and not find(only, "}}", 1, true) then
      local val, err = M.lookup(input, only)
      if val == nil then return nil, format("%s: %s", what and ("template " .. what) or "template", err) end
      return val
    end
    return M.render(v, input, what)
  end
  if type(v) ~= "table" or v == json.null then return v end
  local out = json.is_array(v) and json.array() or {}
  for k, x in pairs(v) do
    local sub_what = what and (type(k) == "number" and format("%s[%d]", what, k - 1) or (what .. "." .. k)) or nil
    local r, err = M.render_value(x, input, sub_what)
    if r == nil then return nil, err end
    out[k] = r
  end
  return out
end

-- placeholders(v) -> list of paths
function M.placeholders(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    for path in v:gmatch(PLACEHOLDER) do
      if not seen[path] then
        seen[path] = true
        out[#out + 1] = path
      end
    end
  elseif type(v) == "table" and v ~= json.null then
    for _, x in pairs(v) do M.placeholders(x, out, seen) end
  end
  return out
end

-- check_paths(step, steps_by_id, paths, where) -> errors: a placeholder
-- that names a dependency's output (dep_<id> or an output_key) must name
-- a dependency of the step; anything else may come from the execution
-- input, which is only known when it runs.
function M.check_paths(step, steps_by_id, paths, where)
  local errors, deps, keys = {}, {}, {}
  for _, d in ipairs(step.dependencies or {}) do
    deps[d] = true
    local ds = steps_by_id[d]
    if ds and ds.output_key then keys[ds.output_key] = true end
  end
  local all_keys = {}
  for id, s in pairs(steps_by_id) do
    all_keys["dep_" .. id] = id
    if s.output_key then all_keys[s.output_key] = id end
  end
  for _, path in ipairs(paths) do
    local segs, err = M.parse_path(path)
    if not segs then
      errors[#errors + 1] = { path = where, message = ("placeholder {{%s}}: %s"):format(path, err) }
    else
      local head = segs[1]
      local dep = head:match("^dep_(.+)$")
      if dep and not deps[dep] then
        errors[#errors + 1] = { path = where, message = steps_by_id[dep]
          and ("placeholder {{%s}} names step '%s', which is not a dependency of this step"):format(path, dep)
          or ("placeholder {{%s}} names no step ('%s')"):format(path, dep) }
      elseif not dep and all_keys[head] and not keys[head] then
        errors[#errors + 1] = { path = where, message =
          ("placeholder {{%s}} names the output of step '%s', which is not a dependency of this step")
            :format(path, all_keys[head]) }
      end
    end
  end
  return errors
end

return M
