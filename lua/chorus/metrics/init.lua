-- chorus.metrics: a registry of Prometheus metrics, rendered in the text
-- exposition format 0.0.4 (what /metrics serves; docs/metrics.md lists
-- every series Chorus registers).
--
--   local reg = metrics.new()
--   local c = reg:counter("chorus_things_total", "Things done.", { "kind" })
--   c:inc(1, "a")
--   reg:counter("chorus_sent_total", "Sent.", {}, function() return stats.sent end)
--   reg:gauge("chorus_queue", "Waiting.", {}, function() return #q end)
--   local h = reg:histogram("chorus_wait_seconds", "Waits.", { "agent" }, { 0.1, 1, 10 })
--   h:observe(0.25, "llm")
--   reg:render() -> text
--
-- The conventions are enforced where a metric is registered (a mistake
-- there is a programmer's, so it raises): a counter's name ends in _total
-- and nothing else's does; a histogram's buckets are increasing and it
-- has no label "le"; at most 3 labels. A collector fn (counter or gauge)
-- is read at scrape time and returns a number, nil (no sample), or rows
-- {label values..., value}; for a counter it must read something that
-- only grows (a stats table's count). Label values are escaped as the
-- format says; HELP text too.
local M = {}

local Registry = {}
Registry.__index = Registry

function M.new()
  return setmetatable({ list = {}, by_name = {} }, Registry)
end

local function escape_label(v)
  return (v:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end
M.escape_label = escape_label

local function label_key(names, values)
  if #names == 0 then return "" end
  local parts = {}
  for i, n in ipairs(names) do
    local v = values[i]
    parts[i] = n .. '="' .. escape_label(v == nil and "" or tostring(v)) .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"

local function add(self, kind, name, help, labels, extra)
  assert(type(name) == "string" and name:match(NAME), "bad metric name: " .. tostring(name))
  assert(not self.by_name[name], "metric registered twice: " .. name)
  assert(type(help) == "string" and help ~= "", "metric without help: " .. name)
  local total = name:sub(-6) == "_total"
  if kind == "counter" then
    assert(total, "a counter's name ends in _total: " .. name)
  else
    assert(not total, "only a counter's name ends in _total: " .. name)
  end
  labels = labels or {}
  assert(#labels <= 3, "at most 3 labels: " .. name)
  for _, l in ipairs(labels) do
    assert(type(l) == "string" and l:match(LABEL) and l:sub(1, 2) ~= "__", "bad label name: " .. tostring(l))
    assert(not (kind == "histogram" and l == "le"), "a histogram cannot have a label le: " .. name)
  end
  local m = { kind = kind, name = name, help = help, labels = labels, series = {}, order = {}, index = {} }
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
  s = m.series[key]
  if not s then
    s = { key = key, value = 0 }
    if m.kind == "histogram" then
      s.counts, s.sum = {}, 0
      for i = 1, #m.buckets do s.counts[i] = 0 end
    end
    m.series[key] = s
    m.order[#m.order + 1] = key
  end
  -- File it under its label values (two values with the same text, 1 and
  -- "1", share the series).
  local vals = { v1, b == nil and NIL or b, c == nil and NIL or c }
  for i = 1, math.max(n, 1) - 1 do
    local nxt = node[vals[i]]
    if not nxt then nxt = {} node[vals[i]] = nxt end
    node = nxt
  end
  node[vals[math.max(n, 1)]] = s
  return s
end

-- counter(name, help, labels, fn) -> c; c:inc(n, label values...) (n >= 0)
function Registry:counter(name, help, labels, fn)
  local m = add(self, "counter", name, help, labels, { fn = fn })
  function m.inc(metric, n, a, b, c)
    local s = series(metric, a, b, c)
    s.value = s.value + (n or 1)
  end
  return m
end

-- gauge(name, help, labels, fn) -> g; g:set(v, label values...),
-- g:add(v, label values...)
function Registry:gauge(name, help, labels, fn)
  local m = add(self, "gauge", name, help, labels, { fn = fn })
  function m.set(metric, v, a, b, c)
    series(metric, a, b, c).value = v
  end
  function m.add(metric, v, a, b, c)
    local s = series(metric, a, b, c)
    s.value = s.value + v
  end
  return m
end

-- Buckets in seconds. A step is an agent call: milliseconds for a tool,
-- seconds to minutes for a model.
M.STEP_BUCKETS = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 }
-- An execution is several steps, and may wait for a human's approval.
M.EXECUTION_BUCKETS = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600 }
-- An API request: sub-millisecond in memory, a few ms with PostgreSQL.
M.HTTP_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
-- A wait for a rate limit's next slot.
M.WAIT_BUCKETS = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 }

-- histogram(name, help, labels, buckets) -> h; h:observe(v, label values...)
-- Each series counts observations per bucket (the first bucket >= v);
-- render() makes them cumulative, as the format wants.
function Registry:histogram(name, help, labels, buckets)
  assert(type(buckets) == "table" and #buckets > 0, "histogram without buckets: " .. name)
  for i = 2, #buckets do assert(buckets[i] > buckets[i - 1], "buckets must increase: " .. name) end
  local m = add(self, "histogram", name, help, labels, { buckets = buckets })
  local nb = #buckets
  function m.observe(metric, v, a, b, c)
    local s = series(metric, a, b, c)
    local bk = metric.buckets
    for i = 1, nb do
      if v <= bk[i] then
        s.counts[i] = s.counts[i] + 1
        break
      end
    end
    s.value = s.value + 1
    s.sum = s.sum + v
  end
  return m
end

local floor, huge, fmt = math.floor, math.huge, string.format
local EXACT = 2 ^ 53 -- integers below it print as integers, exactly

local function num(v)
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  if v ~= v then return "NaN" end
  if v == floor(v) and v < EXACT and v > -EXACT then return fmt("%d", v) end
  return fmt("%.15g", v)
end
M.format_number = num

local function with_le(key, le)
  if key == "" then return '{le="' .. le .. '"}' end
  return key:sub(1, -2) .. ',le="' .. le .. '"}'
end

local function escape_help(s)
  return (s:gsub("\\", "\\\\"):gsub("\n", "\\n"))
end

-- The samples a collector fn gives (a number, or rows of label values
-- and a value); nothing when it fails or gives nil: a scrape shows what
-- it can.
local function collected(out, m)
  local ok, v = pcall(m.fn)
  if not ok or v == nil then return end
  if type(v) == "number" then
    out[#out + 1] = m.name .. label_key(m.labels, {}) .. " " .. num(v)
  elseif type(v) == "table" then
    local nl = #m.labels
    for _, row in ipairs(v) do
      local val = row[nl + 1]
      if type(val) == "number" then
        out[#out + 1] = m.name .. label_key(m.labels, row) .. " " .. num(val)
      end
    end
  end
end

-- render() -> the exposition text: every metric with HELP and TYPE, its
-- series in the order they appeared.
function Registry:render()
  local out = {}
  for _, m in ipairs(self.list) do
    out[#out + 1] = "# HELP " .. m.name .. " " .. escape_help(m.help)
    out[#out + 1] = "# TYPE " .. m.name .. " " .. m.kind
    if m.fn then collected(out, m) end
    for _, key in ipairs(m.order) do
      local s = m.series[key]
      if m.kind == "histogram" then
        local cum = 0
        for i, le in ipairs(m.buckets) do
          cum = cum + s.counts[i]
          out[#out + 1] = m.name .. "_bucket" .. with_le(key, num(le)) .. " " .. num(cum)
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

return M
