-- chorus.http.retry_after: a Retry-After header (RFC 9110 10.2.3) as the
-- milliseconds to wait: delta-seconds ("120") or an HTTP-date ("Wed, 21
-- Oct 2015 07:28:00 GMT"; a date in the past is 0). nil when absent or
-- unreadable (the caller's own backoff applies).
--
--   ms(value [, now_seconds]) -> ms | nil
local M = {}

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 of a proleptic Gregorian date (no time zone:
-- os.time would read it as local time).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

function M.ms(value, now)
  if type(value) ~= "string" then return nil end
  local secs = tonumber(value:match("^%s*(%d+)%s*$"))
  if secs then return secs * 1000 end
  local d, mon, y, hh, mm, ss = value:match("(%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT")
  if not d or not MONTHS[mon] then return nil end
  local t = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400 + hh * 3600 + mm * 60 + ss
  local wait = (t - (now or os.time())) * 1000
  return wait > 0 and wait or 0
end

return M
