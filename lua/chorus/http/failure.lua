-- chorus.http.failure: how agents that call HTTP services (llm, http)
-- turn a failed request into the agent contract's `nil, message, info`:
-- which failures a retry may cure, how long the service asked to wait,
-- and messages that never carry a secret.
--
--   retry_after_ms(headers [, now_s]) -> ms | nil
--       from retry-after-ms (milliseconds; OpenAI, Azure) or Retry-After:
--       delay-seconds or an HTTP date (IMF-fixdate, RFC 850, asctime)
--   http_date(text) -> epoch seconds | nil
--   transport(prefix, err, kind) -> message, info
--       a request that got no response: timeout and cancelled come back as
--       "timeout" / "cancelled" (the step says which deadline); a TLS
--       failure, a body over the limit or a bad URL cannot be cured by a
--       retry ({retry = false}); refused or reset connections can
--   status(prefix, res, provider_message) -> message, info
--       429 and 5xx may be retried ({retry_after_ms} when the service said
--       when); any other status cannot ({retry = false})
--   provider_message(body) -> the service's own error text, if it said one
--   snippet(text [, n]) -> the first n (200) characters on one line
--   redact(text, secrets) -> text with every secret value replaced (also
--       as written inside a JSON string); redact_value(v, secrets) the same
--       through every string of a decoded value
--   safe_url(url) -> url without user:password@ and without the query
local json = require "chorus.json"
local native = require "chorus.native"

local type, tonumber, ipairs, pairs, next, floor = type, tonumber, ipairs, pairs, next, math.floor
local find, gsub, sub, match, lower = string.find, string.gsub, string.sub, string.match, string.lower

local M = {}

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8,
  sep = 9, oct = 10, nov = 11, dec = 12 }

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

function M.http_date(text)
  if type(text) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss
  -- IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
  d, mon, y, hh, mm, ss = match(text, "^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    d, mon, y, hh, mm, ss = match(text, "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then
      y = tonumber(y)
      y = y + (y < 70 and 2000 or 1900)
    end
  end
  if not d then -- asctime: Sun Nov  6 08:49:37 1994
    mon, d, hh, mm, ss, y = match(text, "^%a+ (%a%a%a) +(%d+) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = mon and MONTHS[lower(mon)]
  if not m then return nil end
  d, y, hh, mm, ss = tonumber(d), tonumber(y), tonumber(hh), tonumber(mm), tonumber(ss)
  if d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

function M.retry_after_ms(headers, now_s)
  if type(headers) ~= "table" then return nil end
  local ms = headers["retry-after-ms"]
  if ms and match(ms, "^%s*%d+%.?%d*%s*$") then return floor(tonumber(ms)) end
  local v = headers["retry-after"]
  if type(v) ~= "string" then return nil end
  v = match(v, "^%s*(.-)%s*$")
  if match(v, "^%d+$") then return tonumber(v) * 1000 end
  local at = M.http_date(v)
  if not at then return nil end
  local wait = (at - (now_s or native.time())) * 1000
  return wait > 0 and floor(wait) or 0
end

function M.snippet(text, n)
  n = n or 200
  if type(text) ~= "string" then return "" end
  local s = sub(text, 1, n)
  s = gsub(s, "[%c]+", " ")
  if #text > n then s = s .. "..." end
  return s
end

-- Replaces every occurrence of secret (plain text: gsub would read it as
-- a pattern).
local function replace_all(text, secret)
  local parts, pos = {}, 1
  while true do
    local s, e = find(text, secret, pos, true)
    if not s then break end
    parts[#parts + 1] = sub(text, pos, s - 1)
    parts[#parts + 1] = "[redacted]"
    pos = e + 1
  end
  parts[#parts + 1] = sub(text, pos)
  return table.concat(parts)
end

-- Secrets shorter than this are not looked for (they would match
-- everywhere); keys and tokens are longer.
local MIN_SECRET = 4

function M.redact(text, secrets)
  if type(text) ~= "string" or not secrets then return text end
  for _, secret in ipairs(secrets) do
    if type(secret) == "string" and #secret >= MIN_SECRET then
      if find(text, secret, 1, true) then text = replace_all(text, secret) end
      -- as it appears inside a JSON string ("a/b" is "a\/b" there)
      local escaped = json.encode(secret)
      escaped = escaped and sub(escaped, 2, -2)
      if escaped and escaped ~= secret and find(text, escaped, 1, true) then
        text = replace_all(text, escaped)
      end
    end
  end
  return text
end

-- redact_value(v, secrets) -> v with secrets replaced in every string
-- (keys too), copying only what changes.
function M.redact_value(v, secrets)
  if type(v) == "string" then return M.redact(v, secrets) end
  if type(v) ~= "table" or v == json.null or next(v) == nil then return v end
  local out = json.is_array(v) and json.array() or {}
  for k, x in pairs(v) do out[M.redact_value(k, secrets)] = M.redact_value(x, secrets) end
  return out
end

function M.safe_url(url)
  if type(url) ~= "string" then return tostring(url) end
  url = gsub(url, "^(%a[%w+.%-]*://)[^/@]*@", "%1")
  return (gsub(url, "[?#].*$", ""))
end

local NO_RETRY = { retry = false }
M.NO_RETRY = NO_RETRY

-- Kinds of transport failure a retry cannot cure.
local PERMANENT = { ["tls error"] = true, ["too large"] = true, ["bad url"] = true,
  ["invalid request"] = true, ["unsupported protocol"] = true, ["too many redirects"] = true }

function M.transport(prefix, err, kind)
  if kind == "timeout" or kind == "cancelled" then return kind end
  local msg = prefix .. ": " .. tostring(err)
  if kind == "tls error" then
    msg = msg .. " (is it an https URL to a plain HTTP port, or a certificate the system does not trust?)"
  end
  return msg, PERMANENT[kind] and NO_RETRY or nil
end

function M.provider_message(body)
  if type(body) ~= "string" or body == "" then return nil end
  local doc = json.decode(body)
  if type(doc) ~= "table" then return nil end
  local e = doc.error
  if type(e) == "table" and type(e.message) == "string" then return e.message end
  if type(e) == "string" then return e end -- Ollama: {"error": "..."}
  if type(doc.message) == "string" then return doc.message end
  if type(doc.detail) == "string" then return doc.detail end -- FastAPI, vLLM
  return nil
end

function M.status(prefix, res, provider)
  local st = res.status
  local said = provider or M.provider_message(res.body)
  local msg = ("%s: HTTP %d"):format(prefix, st)
  if said then
    msg = msg .. ": " .. M.snippet(said, 500)
  elseif res.body and res.body ~= "" then
    msg = msg .. ": " .. M.snippet(res.body)
  end
  if st == 429 or st >= 500 then
    local after = M.retry_after_ms(res.headers)
    return msg, after and { retry_after_ms = after } or nil
  end
  return msg, NO_RETRY
end

return M
