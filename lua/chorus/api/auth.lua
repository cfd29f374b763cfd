-- chorus.api.auth: bearer API keys, roles and tenants.
--
-- A key is "chk_" + 64 hex digits (32 random bytes); only its sha256 is
-- stored, with a short public prefix for listing. A key belongs to a
-- tenant and a user and has one role:
--   viewer   read configs (own tenant + global), own executions, registry
--   operator viewer + write own tenant's configs, execute, control own
--            executions
--   admin    everything in every tenant: global configs, every
--            execution, registry reload, keys
-- Lookups are cached for `ttl_ms` (default 5 s), keyed by the header as
-- sent (a string the request holds anyway), so a request with a key seen
-- lately costs one table lookup: no pattern, no sha256, no database
-- query; a revoked key stops working within that.
local native = require "chorus.native"
local sched = require "chorus.sched"

local M = {}

M.ROLES = { viewer = 1, operator = 2, admin = 3 }
M.ROLE_NAMES = { "viewer", "operator", "admin" }

-- What each action needs.
local NEEDS = { read = 1, write = 2, execute = 2, control = 2, admin = 3 }

-- generate() -> key, {prefix, hash}: the key itself is shown once.
function M.generate()
  local key = "chk_" .. native.random_hex(32)
  return key, { prefix = key:sub(1, 12), hash = native.sha256(key) }
end

function M.hash(key)
  return native.sha256(key)
end

-- What a key looks like, for messages; well_formed(key) -> true | nil, why
-- (why never quotes the key: a mistyped key is still mostly a secret).
M.KEY_FORMAT = "chk_ followed by 64 lowercase hex digits (0-9, a-f)"

function M.well_formed(key)
  if type(key) ~= "string" then return nil, "it is not text" end
  if key:sub(1, 4) ~= "chk_" then return nil, "it does not start with chk_" end
  if #key ~= 68 then return nil, ("it has %d characters, not 68"):format(#key) end
  if key:find("[^0-9a-f]", 5) then return nil, "it has characters other than 0-9 and a-f after chk_" end
  return true
end

-- principal(rec) -> what handlers see of the caller (key_prefix: the
-- key's public prefix, what the access log shows of it)
function M.principal(rec)
  return { key_id = rec.id, key_prefix = rec.prefix, tenant_id = rec.tenant_id, user_id = rec.user_id,
    role = rec.role, admin = rec.role == "admin" }
end

-- can(p, action) -> boolean
function M.can(p, action)
  local need = NEEDS[action]
  assert(need, "unknown action " .. tostring(action))
  return (M.ROLES[p.role] or 0) >= need
end

local Auth = {}
Auth.__index = Auth

-- new({store = s, ttl_ms = 5000, anonymous = principal|nil})
-- anonymous: the principal used when auth is off (`chorus serve --no-auth`).
function M.new(opts)
  return setmetatable({ store = opts.store, ttl = opts.ttl_ms or 5000, cache = {}, cached = 0,
    anonymous = opts.anonymous }, Auth)
end

local MAX_CACHE = 10000

-- authenticate(authorization_header) -> principal | nil, code, message
function Auth:authenticate(header)
  if self.anonymous then return self.anonymous end
  if header == nil or header == "" then
    return nil, "unauthorized", "missing Authorization: Bearer <api key>"
  end
  local now = sched.now()
  local hit = self.cache[header]
  if hit and hit.expires > now then
    if not hit.principal then return nil, "unauthorized", "invalid API key" end
    return hit.principal
  end
  local key = header:match("^[Bb]earer%s+(%S+)%s*$")
  if not key then return nil, "unauthorized", "the Authorization header must be 'Bearer <api key>'" end
  if not key:match("^chk_%x+$") or #key ~= 68 then return nil, "unauthorized", "invalid API key" end
  local rec, err = self.store:find_key(native.sha256(key))
  if err then return nil, "unavailable", "cannot check the API key: " .. tostring(err) end
  local p = rec and not rec.revoked_at and M.principal(rec) or nil
  if self.cached >= MAX_CACHE then self.cache, self.cached = {}, 0 end
  if not hit then self.cached = self.cached + 1 end
  self.cache[header] = { principal = p, expires = now + self.ttl }
  if not p then return nil, "unauthorized", "invalid API key" end
  return p
end

return M
