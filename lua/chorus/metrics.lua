-- chorus.metrics: Prometheus metrics in the text exposition format 0.0.4.
-- Counters, gauges (set, or read from a function at scrape time) and
-- histograms, each with fixed label names. attach(engine) counts every
-- execution and step transition from the event bus.
local M = {}

local Registry = {}
Registry.__index = Registry

function M.new()
  return setmetatable({ list = {}, by_name = {} }, Registry)
end

local function label_key(names, values)
  if #names == 0 then return "" end
  local parts = {}
  for i, n in ipairs(names) do
    local v = tostring(values[i] == nil and "" or values[i])
    v = v:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"')
    parts[i] = n .. '="' .. v .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function add(self, kind, name, help, labels, extra)
  assert(not self.by_name[name], "metric registered twice: " .. name)
  local m = { kind = kind, name = name, help = help, labels = labels or {}, series = {}, order = {}, index = {} }
  assert(#m.labels <= 3, "at most 3 labels")
  for k, v in pairs(extra or {}) do m[k] = v end
  self.by_name[name] = m
  self.list[#self.list + 1] = m
  return m
end

-- series(m, a, b, c) -> the series of those label values. Looked up
-- through nested tables by value (metrics are updated on every event and
-- request: no string is built once a series exists); up to 3 labels.
local NIL = {}
local function series(m, a, b, c)
  local node = m.index
  local n = #m.labels
  local v1 = a == nil and NIL or a
  if n == 0 then v1 = NIL end
  local s
  if n <= 1 then
    s = node[v1]
  else
    local l2 = node[v1]
    if l2 then
      local v2 = b == nil and NIL or b
      if n == 2 then
        s = l2[v2]
      else
        local l3 = l2[v2]
        s = l3 and l3[c == nil and NIL or c]
      end
    end
  end
  if s then return s end
  local key = label_key(m.labels, { a, b, c })
  s = { key = key, value = 0 }
  if m.kind == "histogram" then
    s.counts, s.sum = {}, 0
    for i = 1, #m.buckets do s.counts[i] = 0 end
  end
  m.series[key] = s
  m.order[#m.order + 1] = key
  -- file it under its label values
  local vals = { v1, b == nil and NIL or b, c == nil and NIL or c }
  for i = 1, math.max(n, 1) - 1 do
    local nxt = node[vals[i]]
    if not nxt then nxt = {} node[vals[i]] = nxt end
    node = nxt
  end
  node[vals[math.max(n, 1)]] = s
  return s
end

-- counter(name, help, labels, fn) -> c; c:inc(n, label values...); with
-- fn, read at scrape time as a gauge's (it must only grow).
function Registry:counter(name, help, labels, fn)
  local m = add(self, "counter", name, help, labels, { fn = fn })
  function m:inc(n, a, b, c)
    local s = series(self, a, b, c)
    s.value = s.value + (n or 1)
  end
  return m
end

-- gauge(name, help, labels, fn) -> g; g:set(v, label values...); with fn,
-- fn() -> value (or {label values..., value} rows) is read at scrape time.
function Registry:gauge(name, help, labels, fn)
  local m = add(self, "gauge", name, help, labels, { fn = fn })
  function m:set(v, a, b, c)
    series(self, a, b, c).value = v
  end
  function m:add(v, a, b, c)
    local s = series(self, a, b, c)
    s.value = s.value + v
  end
  return m
end

M.DEFAULT_BUCKETS = { 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000 }

-- histogram(name, help, labels, buckets) -> h; h:observe(v, label values...)
function Registry:histogram(name, help, labels, buckets)
  local m = add(self, "histogram", name, help, labels, { buckets = buckets or M.DEFAULT_BUCKETS })
  function m:observe(v, a, b, c)
    local s = series(self, a, b, c)
    local b = self.buckets
    for i = 1, #b do
      if v <= b[i] then s.counts[i] = s.counts[i] + 1 end
    end
    s.value = s.value + 1
    s.sum = s.sum + v
  end
  return m
end

local function num(v)
  if v == math.huge then return "+Inf" end
  if v ~= v then return "NaN" end
  if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
  return ("%.6g"):format(v)
end

local function with_le(key, le)
  if key == "" then return '{le="' .. le .. '"}' end
  return key:sub(1, -2) .. ',le="' .. le .. '"}'
end

-- render() -> the exposition text
function Registry:render()
  local out = {}
  for _, m in ipairs(self.list) do
    out[#out + 1] = ("# HELP %s %s"):format(m.name, m.help)
    out[#out + 1] = ("# TYPE %s %s"):format(m.name, m.kind)
    if m.fn then
      local ok, v = pcall(m.fn)
      if ok and type(v) == "number" then
        out[#out + 1] = m.name .. " " .. num(v)
      elseif ok and type(v) == "table" then
        for _, row in ipairs(v) do
          local vals = {}
          for i = 1, #m.labels do vals[i] = row[i] end
          out[#out + 1] = m.name .. label_key(m.labels, vals) .. " " .. num(row[#m.labels + 1])
        end
      end
    end
    for _, key in ipairs(m.order) do
      local s = m.series[key]
      if m.kind == "histogram" then
        for i, le in ipairs(m.buckets) do
          out[#out + 1] = m.name .. "_bucket" .. with_le(key, num(le)) .. " " .. num(s.counts[i])
        end
        out[#out + 1] = m.name .. "_bucket" .. with_le(key, "+Inf") .. " " .. num(s.value)
        out[#out + 1] = m.name .. "_sum" .. key .. " " .. num(s.sum)
        out[#out + 1] = m.name .. "_count" .. key .. " " .. num(s.value)
      else
        out[#out + 1] = m.name .. key .. " " .. num(s.value)
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- engine(registry, engine) registers the engine's metrics and counts its
-- events; returns the registry.
function M.engine(reg, engine)
  local transitions = reg:counter("chorus_execution_transitions_total",
    "Execution status transitions, by the status entered.", { "status" })
  local step_tr = reg:counter("chorus_step_transitions_total",
    "Step run status transitions, by agent and status entered.", { "agent", "status" })
  local retries = reg:counter("chorus_step_retries_total", "Step attempts that failed and were retried.", { "agent" })
  local latency = reg:histogram("chorus_step_latency_ms", "Latency of finished step runs in ms.", { "agent", "status" })
  local exec_latency = reg:histogram("chorus_execution_latency_ms", "Latency of finished executions in ms.", { "status" })
  reg:gauge("chorus_tasks_live", "Tasks (coroutines) not yet done.", {}, require("chorus.sched").live_tasks)
  reg:gauge("chorus_process_resident_bytes", "Resident set size.", {}, require("chorus.native").rss)
  reg:gauge("chorus_lua_heap_bytes", "Bytes in use in the Lua heap.", {},
    function() return collectgarbage("count") * 1024 end)
  if engine.store.archive then -- the memory store's ended executions outside the Lua heap
    local archive = engine.store.archive
    reg:gauge("chorus_store_archived_executions", "Ended executions the memory store keeps serialized, outside the Lua heap.", {},
      function() return archive:count() end)
    reg:gauge("chorus_store_archive_bytes", "Bytes of the ended executions the memory store keeps serialized.", {},
      function() return archive:bytes() end)
  end
  reg:gauge("chorus_registry_generation", "Registry reloads so far (generation).", {},
    function() return engine.registry.generation end)
  reg:gauge("chorus_registry_load_errors", "Scripts that failed to load in the current generation.", {},
    function() return #engine.registry:snapshot().errors end)
  reg:gauge("chorus_event_subscriber_errors_total", "Event subscribers that raised.", {},
    function() return engine.bus.errors end)
  local store = engine.store
  engine.bus:subscribe(function(e)
    local t = e.type
    if t == "execution.status" then
      transitions:inc(1, e.status)
      if e.status == "completed" or e.status == "failed" or e.status == "cancelled" then
        local exec = store.get_execution and store:get_execution(e.execution_id)
        if exec and exec.latency_ms then exec_latency:observe(exec.latency_ms, e.status) end
      end
    elseif t == "step.status" then
      step_tr:inc(1, e.agent, e.status)
      if e.latency_ms and (e.status == "completed" or e.status == "failed") then
        latency:observe(e.latency_ms, e.agent, e.status)
      end
    elseif t == "step.retry" then
      retries:inc(1, e.agent or "")
    end
  end)
  return reg
end

return M
