-- chorus.engine.step_cache: results of steps with `cache: {ttl_s}`, reused by
-- later runs of the same step with the same agent version, params and
-- input. Shared by every node through Redis (chorus.run.cluster) when there
-- is one, else an in-process LRU. Redis down, or an entry that does not
-- decode, is a miss — never a failed step.
--
--   key(agent, version, params, input) -> key | nil (input not JSON)
--   get(key) -> {output, meta, execution_id} | nil, "hit"|"miss"
--   put(key, {output, meta, execution_id}, ttl_s)
--   M.stats: hits, misses, errors
local native = require "chorus.native"
local json = require "chorus.json"
local cluster = require "chorus.run.cluster"

local M = { stats = { hits = 0, misses = 0, errors = 0 }, max_entries = 10000 }

local PREFIX = "chorus:cache:"

-- In-process: entries with their expiry, dropped oldest-first past
-- max_entries (insertion order; a hit does not refresh: entries expire).
local local_map, order, head, tail = {}, {}, 1, 0

local function local_put(key, text, ttl_s)
  if not local_map[key] then
    tail = tail + 1
    order[tail] = key
  end
  local_map[key] = { text = text, expires = native.now() + ttl_s * 1000 }
  while tail - head + 1 > M.max_entries do
    local_map[order[head]] = nil
    order[head] = nil
    head = head + 1
  end
end

local function local_get(key)
  local e = local_map[key]
  if not e then return nil end
  if e.expires < native.now() then
    local_map[key] = nil
    return nil
  end
  return e.text
end

function M.key(agent, version, params, input)
  local p, perr = json.canonical(params or {})
  local i, ierr = json.canonical(input or {})
  if not p or not i then return nil, perr or ierr end
  return native.sha256(table.concat({ agent, version or "", p, i }, "\0"))
end

function M.get(key)
  local text
  local c = cluster.client()
  if not c and cluster.url then -- Redis configured but down: a miss
    M.stats.errors = M.stats.errors + 1
  elseif c then
    local r, err = c:call("GET", PREFIX .. key)
    if r == nil then
      M.stats.errors = M.stats.errors + 1
      require("chorus.log").warn("step cache: Redis GET failed (%s): a miss", tostring(err))
    elseif type(r) == "string" then
      text = r
    end
  else
    text = local_get(key)
  end
  local entry = text and json.decode(text)
  if type(entry) ~= "table" or entry.output == nil then
    M.stats.misses = M.stats.misses + 1
    return nil, "miss"
  end
  M.stats.hits = M.stats.hits + 1
  return entry, "hit"
end

function M.put(key, entry, ttl_s)
  local text = json.encode(entry)
  if not text then return end
  local c = cluster.client()
  if not c and cluster.url then return end -- down: nothing kept
  if c then
    local ok, err = c:call("SET", PREFIX .. key, text, "EX", tostring(math.max(1, math.floor(ttl_s))))
    if ok == nil then
      M.stats.errors = M.stats.errors + 1
      require("chorus.log").warn("step cache: Redis SET failed: %s", tostring(err))
    end
    return
  end
  local_put(key, text, ttl_s)
end

-- reset(): forget the in-process entries (specs).
function M.reset()
  local_map, order, head, tail = {}, {}, 1, 0
  M.stats = { hits = 0, misses = 0, errors = 0 }
end

return M
