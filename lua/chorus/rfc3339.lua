-- chorus.rfc3339: the one way the API writes a time, RFC 3339 in UTC with
-- milliseconds ("2026-12-03T10:15:30.123Z"). The engine and the stores
-- keep epoch seconds (numbers compare and subtract cheaply); records are
-- given this form only as they leave through the API (chorus.api.present),
-- a webhook or the WebSocket.
--
--   format(seconds) -> "YYYY-MM-DDTHH:MM:SS.mmmZ"
-- Arithmetic rather than os.date: no process-wide state (os.date's gmtime
-- buffer).
local floor, format = math.floor, string.format

local M = {}

-- civil(days since 1970-01-01) -> year, month, day (proleptic Gregorian;
-- H. Hinnant's civil_from_days).
local function civil(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- A record's times fall within a few seconds of each other: the text up
-- to the second is made once per second (a small cache), the
-- milliseconds are one of a thousand ready-made endings. A time costs a
-- lookup and a concatenation, not a string.format (half the time; a
-- record with its steps has ten times). The cache starts again past
-- MAX_CACHED seconds: a server's heap is walked by every collection
-- cycle, and an hour of seconds kept (~300 KB) would be a fifth of it.
local MS = {}
for i = 0, 999 do MS[i] = format(".%03dZ", i) end
local seconds, cached, MAX_CACHED = {}, 0, 64

local function second(s)
  local days = floor(s / 86400)
  local sod = s - days * 86400
  local y, m, d = civil(days)
  local text = format("%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, floor(sod / 3600), floor(sod % 3600 / 60), sod % 60)
  if cached >= MAX_CACHED then seconds, cached = {}, 0 end
  seconds[s], cached = text, cached + 1
  return text
end

function M.format(t)
  -- Rounded to the millisecond first, so .9996 carries into the second.
  local ms = floor(t * 1000 + 0.5)
  local s = floor(ms / 1000)
  return (seconds[s] or second(s)) .. MS[ms - s * 1000]
end

return M
