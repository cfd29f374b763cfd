-- chorus.cli.diff: line differences of two texts, as diff -u prints them.
--
--   lines(text) -> array of lines (without their newlines)
--   edits(a, b) -> { {op = " " | "-" | "+", text = line}, ... }: a shortest
--     edit script turning lines a into lines b (Myers' O(ND) algorithm)
--   unified(a, b, {from = "label", to = "label", context = 3}) -> text, or
--     nil when a and b are the same
local M = {}

function M.lines(text)
  local out = {}
  if text == "" then return out end
  for line in (text:sub(-1) == "\n" and text or text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- Past this many differences the search stops being worth its memory
-- (O(D^2)): the result is then "every line removed, every line added",
-- still a correct, if long, script.
local MAX_D = 2000

-- edits(a, b): Myers, "An O(ND) Difference Algorithm and Its Variations"
-- (1986): for d = 0, 1, ... the furthest-reaching path on each diagonal
-- k = x - y with d non-diagonal moves; the V arrays of every d are kept
-- to walk the path back from (n, m).
function M.edits(a, b)
  local n, m = #a, #b
  local v, trace = { [1] = 0 }, {}
  local found
  for d = 0, math.min(n + m, MAX_D) do
    local snap = {}
    for k, x in pairs(v) do snap[k] = x end
    trace[d] = snap
    for k = -d, d, 2 do
      local x
      if k == -d or (k ~= d and (v[k - 1] or -1) < (v[k + 1] or -1)) then
        x = v[k + 1] -- down: an insertion
      else
        x = v[k - 1] + 1 -- right: a deletion
      end
      local y = x - k
      while x < n and y < m and a[x + 1] == b[y + 1] do x, y = x + 1, y + 1 end
      v[k] = x
      if x >= n and y >= m then found = d break end
    end
    if found then break end
  end
  local out = {}
  if not found then
    for i = 1, n do out[#out + 1] = { op = "-", text = a[i] } end
    for j = 1, m do out[#out + 1] = { op = "+", text = b[j] } end
    return out
  end
  -- Walk back from (n, m), collecting the script in reverse: on round d
  -- the path came from diagonal prev_k by one move, then slid down its
  -- snake of equal lines. (On round 0, v[1] = 0 stands for a start at
  -- (0, -1), so the first snake ends the walk at (0, 0).)
  local rev = {}
  local x, y = n, m
  for d = found, 0, -1 do
    local vd = trace[d]
    local k = x - y
    local prev_k
    if k == -d or (k ~= d and (vd[k - 1] or -1) < (vd[k + 1] or -1)) then
      prev_k = k + 1
    else
      prev_k = k - 1
    end
    local px = vd[prev_k]
    local py = px - prev_k
    while x > px and y > py do
      rev[#rev + 1] = { op = " ", text = a[x] }
      x, y = x - 1, y - 1
    end
    if d > 0 then
      if x == px then
        rev[#rev + 1] = { op = "+", text = b[y] }
      else
        rev[#rev + 1] = { op = "-", text = a[x] }
      end
    end
    x, y = px, py
  end
  for i = #rev, 1, -1 do out[#out + 1] = rev[i] end
  return out
end

-- The range of a hunk: "start,count", with diff's conventions (a hunk
-- of one line is "start"; an empty one starts at the line before).
local function range(start, count)
  if count == 0 then return ("%d,0"):format(start - 1) end
  if count == 1 then return tostring(start) end
  return ("%d,%d"):format(start, count)
end

function M.unified(a, b, opts)
  opts = opts or {}
  local ctx = opts.context or 3
  local es = M.edits(a, b)
  local changed = false
  for _, e in ipairs(es) do
    if e.op ~= " " then changed = true break end
  end
  if not changed then return nil end
  -- Line numbers of each edit in a and b.
  local ai, bi = 1, 1
  for _, e in ipairs(es) do
    e.a, e.b = ai, bi
    if e.op ~= "+" then ai = ai + 1 end
    if e.op ~= "-" then bi = bi + 1 end
  end
  local out = { "--- " .. (opts.from or "a"), "+++ " .. (opts.to or "b") }
  local i = 1
  while i <= #es do
    -- The next change, with ctx lines before; the hunk runs until a run
    -- of more than 2 * ctx equal lines (or the end).
    while i <= #es and es[i].op == " " do i = i + 1 end
    if i > #es then break end
    local first = math.max(1, i - ctx)
    local last, j = i, i
    while j <= #es do
      if es[j].op ~= " " then
        last = j
        j = j + 1
      else
        local run = j
        while run <= #es and es[run].op == " " do run = run + 1 end
        if run > #es or run - j > 2 * ctx then break end
        j = run
      end
    end
    last = math.min(#es, last + ctx)
    local ac, bc = 0, 0
    for k = first, last do
      if es[k].op ~= "+" then ac = ac + 1 end
      if es[k].op ~= "-" then bc = bc + 1 end
    end
    out[#out + 1] = ("@@ -%s +%s @@"):format(range(es[first].a, ac), range(es[first].b, bc))
    for k = first, last do out[#out + 1] = es[k].op .. es[k].text end
    i = last + 1
  end
  return table.concat(out, "\n") .. "\n"
end

return M
