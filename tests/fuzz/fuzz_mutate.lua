-- tests/fuzz/fuzz_mutate.lua: a structure-aware mutation of JSON text, for
-- the targets' LLVMFuzzerCustomMutator. Byte flips rarely turn a JSON
-- object into a number while keeping the document valid; this does: it
-- decodes, changes one node (a value swapped for one of another type,
-- a field removed or added, an element duplicated, a subtree copied
-- elsewhere) and encodes again.
--
--   mutate(text, seed) -> new text | nil (text is not a JSON container)
-- Deterministic for a (text, seed) pair, and it leaves math.random alone.
local json = require "chorus.json"

local M = {}

-- Field names the config schema, the agents and the API bodies know.
local FIELDS = { "name", "description", "strategy", "steps", "settings", "metadata", "id",
  "agent", "params", "timeout_ms", "retry", "max_attempts", "backoff_ms", "max_backoff_ms",
  "jitter", "dependencies", "output_key", "on_failure", "is_fallback", "fallback_for",
  "consensus_group", "weight", "approval", "compensate", "parallel_limit",
  "consensus_threshold", "aggregator", "aggregator_options", "output_step",
  "enable_monitoring", "callback_url", "output", "ms", "fail_first", "fail_times", "message",
  "key", "global", "input", "input_data", "config", "reason" }

local WORDS = { "", "a", "b", "x y", "echo", "delay", "fail", "flaky", "parallel", "sequential",
  "consensus", "fallback", "majority", "weighted", "merge", "abort", "continue",
  "https://example.com/h", "ftp://x", "a.b-c_d", "-a", ("n"):rep(201) }

local NUMBERS = { 0, 1, -1, 2, 3, 0.5, 1.5, 100, 1000, 1001, 10000, 1e6, 1e9, 1e12,
  86400000, 86400001, 2 ^ 53, -(2 ^ 53), 1e-9 }

-- A linear congruential generator: rand(n) -> 1..n
local function rng(seed)
  local x = seed % 2147483648
  return function(n)
    x = (x * 1103515245 + 12345) % 2147483648
    return math.floor(x / 2147483648 * n) + 1
  end
end

-- Every container in v (v first), sorted keys with each.
local function containers(v, out, depth)
  if type(v) ~= "table" or depth > 40 then return out end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  out[#out + 1] = { t = v, keys = keys }
  for _, k in ipairs(keys) do containers(v[k], out, depth + 1) end
  return out
end

local function copy(v, depth)
  if type(v) ~= "table" or depth > 40 then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, depth + 1) end
  return out
end

-- A value of some type: a scalar, an empty or small container, or a copy
-- of a node of the same document.
local function value(rand, all)
  local kind = rand(9)
  if kind == 1 then return NUMBERS[rand(#NUMBERS)] end
  if kind == 2 then return rand(2) == 1 end
  if kind == 3 then return json.null end
  if kind == 4 then return WORDS[rand(#WORDS)] end
  if kind == 5 then return FIELDS[rand(#FIELDS)] end
  if kind == 6 then return rand(2) == 1 and {} or json.array({}) end
  if kind == 7 then return { WORDS[rand(#WORDS)] } end
  if kind == 8 then return { [FIELDS[rand(#FIELDS)]] = WORDS[rand(#WORDS)] } end
  return copy(all[rand(#all)].t, 1)
end

function M.mutate(text, seed)
  local doc = json.decode(text)
  if type(doc) ~= "table" then return nil end
  local rand = rng(seed)
  local all = containers(doc, {}, 1)
  local c = all[rand(#all)]
  local t, keys = c.t, c.keys
  local is_array = #t > 0 and #t == #keys
  local op = rand(4)
  if #keys == 0 then op = 3 end
  if op == 1 then -- swap a value
    t[keys[rand(#keys)]] = value(rand, all)
  elseif op == 2 then -- remove a field or element
    if is_array then table.remove(t, rand(#t)) else t[keys[rand(#keys)]] = nil end
  elseif op == 3 then -- add a field or element
    if is_array then
      table.insert(t, rand(#t + 1), value(rand, all))
    else
      t[FIELDS[rand(#FIELDS)]] = value(rand, all)
    end
  else -- duplicate an element, or copy a field's value under another name
    local k = keys[rand(#keys)]
    if is_array then
      table.insert(t, rand(#t + 1), copy(t[k], 1))
    else
      t[FIELDS[rand(#FIELDS)]] = copy(t[k], 1)
    end
  end
  return (json.encode(doc))
end

return M
