-- chorus.cli.render: what the commands for a running system print for
-- people: aligned tables, times in RFC 3339 (UTC), durations, status
-- colours (only on a terminal, never with NO_COLOR), and records made
-- printable (JSON nulls dropped).
local json = require "chorus.json"
local progress = require "chorus.cli.progress"

local M = {}

-- time(v) -> "2026-01-02T03:04:05Z" from epoch seconds, or an RFC 3339
-- text as the API gives it; "-" when absent.
function M.time(v)
  if type(v) == "number" then return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(v)) end
  if type(v) == "string" and v ~= "" then return (v:gsub("%.%d+", "", 1):gsub("%+00:00$", "Z")) end
  return "-"
end

M.duration = progress.fmt_ms

-- denull(v) -> v without JSON nulls (absent fields, as Lua sees them):
-- records decoded from the API print like the store's own.
function M.denull(v)
  if type(v) ~= "table" then
    if v == json.null then return nil end
    return v
  end
  local out = getmetatable(v) and json.array() or {}
  for k, x in pairs(v) do
    if x ~= json.null then out[k] = M.denull(x) end
  end
  return out
end

-- table(out, header, rows, {color = bool, status_col = n}): columns
-- aligned, two spaces apart; the status column coloured by its value.
function M.table(out, header, rows, opts)
  opts = opts or {}
  local all = { header }
  for _, r in ipairs(rows) do all[#all + 1] = r end
  local widths = {}
  for _, r in ipairs(all) do
    for i = 1, #header do
      r[i] = r[i] == nil and "-" or tostring(r[i])
      widths[i] = math.max(widths[i] or 0, #r[i])
    end
  end
  local colors = progress.COLORS
  for ri, r in ipairs(all) do
    local cells = {}
    for i = 1, #header do
      local cell = i < #header and ("%-" .. widths[i] .. "s"):format(r[i]) or r[i]
      if opts.color and ri > 1 and i == opts.status_col and colors[r[i]] then
        cell = colors[r[i]] .. cell .. progress.RESET
      end
      cells[i] = cell
    end
    out:write((table.concat(cells, "  "):gsub("%s+$", "")), "\n")
  end
end

-- print_json(v) -> true: one line of JSON on stdout (for scripts)
function M.print_json(v)
  local s, err = json.encode(v)
  if not s then s = json.encode_lenient(v) or ("null # " .. tostring(err)) end
  io.stdout:write(s, "\n")
  return true
end

return M
