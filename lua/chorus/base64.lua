-- chorus.base64: RFC 4648 base64 (standard alphabet, '=' padding), for
-- HTTP Basic credentials.
--
--   encode(s) -> string
--   decode(s) -> string | nil, err   (padding required, no whitespace)
local bit = require "bit"

local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, char, sub, concat = string.byte, string.char, string.sub, table.concat

local M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
  local c = byte(ALPHABET, i)
  ENC[i - 1] = char(c)
  DEC[c] = i - 1
end

function M.encode(s)
  local out, n = {}, 0
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = bor(lshift(a, 16), lshift(b or 0, 8), c or 0)
    n = n + 1
    out[n] = ENC[rshift(v, 18)] .. ENC[band(rshift(v, 12), 63)]
      .. (b and ENC[band(rshift(v, 6), 63)] or "=") .. (c and ENC[band(v, 63)] or "=")
  end
  return concat(out)
end

function M.decode(s)
  if type(s) ~= "string" or #s % 4 ~= 0 then return nil, "base64: length is not a multiple of 4" end
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local q = sub(s, i, i + 3)
    local a, b, c, d = byte(q, 1, 4)
    local last = i + 3 == #s
    local va, vb = DEC[a], DEC[b]
    local vc = c ~= 61 and DEC[c] or nil
    local vd = d ~= 61 and DEC[d] or nil
    if not va or not vb or (c ~= 61 and not vc) or (d ~= 61 and not vd)
      or ((c == 61 or d == 61) and not last) or (c == 61 and d ~= 61) then
      return nil, "base64: invalid character or padding"
    end
    local v = bor(lshift(va, 18), lshift(vb, 12), lshift(vc or 0, 6), vd or 0)
    n = n + 1
    if vd then
      out[n] = char(rshift(v, 16), band(rshift(v, 8), 255), band(v, 255))
    elseif vc then
      out[n] = char(rshift(v, 16), band(rshift(v, 8), 255))
    else
      out[n] = char(rshift(v, 16))
    end
  end
  return concat(out)
end

return M
