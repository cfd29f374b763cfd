-- chorus.text: small helpers for text that comes from elsewhere (job
-- logs, documents) and goes into records, events and prompts.
--
--   utf8_clean(s) -> s with each byte that is not part of well-formed UTF-8
--                    replaced by U+FFFD (records and events are JSON)
--   tail(s, max_bytes) -> the end of s within max_bytes, starting at a line
--                    start when one is near, and whether it was cut
--   lines(s) -> {line...} without the line ends ("\n" or "\r\n")
local native = require "chorus.native"

local sub, find = string.sub, string.find
local utf8_valid = native.utf8_valid

local M = {}

local REPLACEMENT = "\239\191\189" -- U+FFFD

function M.utf8_clean(s)
  local ok, bad = utf8_valid(s)
  if ok then return s end
  local parts, n, from = {}, 0, 1
  while not ok do
    -- bad is the 0-based offset of the first bad byte of s:sub(from).
    n = n + 1
    parts[n] = sub(s, from, from + bad - 1) .. REPLACEMENT
    from = from + bad + 1
    ok, bad = utf8_valid(sub(s, from))
  end
  parts[n + 1] = sub(s, from)
  return table.concat(parts)
end

-- A line start is searched for in the first 1 KiB of the kept part; a log
-- with longer lines is cut mid-line.
function M.tail(s, max_bytes)
  if #s <= max_bytes then return s, false end
  local start = #s - max_bytes + 1
  local nl = find(s, "\n", start, true)
  if nl and nl - start < 1024 and nl < #s then start = nl + 1 end
  return sub(s, start), true
end

function M.lines(s)
  local out, n = {}, 0
  for line in (s:sub(-1) == "\n" and s or s .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    out[n] = line
  end
  return out
end

return M
