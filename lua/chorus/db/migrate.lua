-- chorus.db.migrate: numbered SQL migrations (migrations/NNN_name.up.sql and
-- NNN_name.down.sql), applied in order, each in its own transaction with
-- its row in schema_migrations, under a session advisory lock so that
-- nodes starting together apply each migration once. Running `up` twice
-- changes nothing the second time.
--
--   list(dir) -> {{version, name, up, down}...} | nil, err
--   status(pool, dir) -> {{version, name, applied_at|nil}...} | nil, err
--   up(pool, dir) -> applied versions | nil, err
--   down(pool, n, dir) -> reverted versions | nil, err
local native = require "chorus.native"

local M = {}

-- One lock id for "migrating chorus", shared by every node.
M.LOCK_ID = 72610001

M.dir = native.home .. "/migrations"

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

function M.list(dir)
  dir = dir or M.dir
  local ents, err = native.list_dir(dir)
  if not ents then return nil, err end
  local by = {}
  for _, e in ipairs(ents) do
    local v, name, kind = e.name:match("^(%d+)_([%w_]+)%.(%a+)%.sql$")
    if v and (kind == "up" or kind == "down") then
      local version = tonumber(v)
      local m = by[version]
      if m and m.name ~= name then
        return nil, ("migrations %s and %s share version %d"):format(m.name, name, version)
      end
      m = m or { version = version, name = name }
      m[kind] = dir .. "/" .. e.name
      by[version] = m
    end
  end
  local out = {}
  for _, m in pairs(by) do
    if not m.up then return nil, ("migration %03d_%s has no .up.sql"):format(m.version, m.name) end
    out[#out + 1] = m
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

local ENSURE = [[CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now())]]

-- Runs fn(conn) holding the advisory lock on one connection.
local function locked(pool, fn)
  return pool:with(function(c)
    local ok, err = c:query("SELECT pg_advisory_lock($1)", M.LOCK_ID)
    if not ok then return nil, "cannot take the migration lock: " .. tostring(err) end
    local r = { pcall(fn, c) }
    c:query("SELECT pg_advisory_unlock($1)", M.LOCK_ID)
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, table.maxn(r))
  end)
end

local function applied(c)
  local ok, err = c:query(ENSURE)
  if not ok then return nil, err end
  local res
  res, err = c:query("SELECT version, name, extract(epoch FROM applied_at) AS at FROM schema_migrations ORDER BY version")
  if not res then return nil, err end
  local by = {}
  for _, r in ipairs(res.rows) do by[r.version] = r end
  return by
end

-- Runs one file in a transaction together with its bookkeeping statement.
local function apply(c, path, book_sql, ...)
  local sql, rerr = read(path)
  if not sql then return nil, ("cannot read %s: %s"):format(path, rerr) end
  local ok, err = c:query("BEGIN")
  if not ok then return nil, err end
  ok, err = c:exec(sql)
  if ok then ok, err = c:query(book_sql, ...) end
  if not ok then
    c:query("ROLLBACK")
    return nil, ("%s: %s"):format(path:match("[^/]+$"), tostring(err))
  end
  return c:query("COMMIT")
end

-- with_applied(pool, dir, fn) -> fn(c, list, done): the migrations of
-- dir and those the database has applied, read under the migration lock
-- (status, up and down all start here).
local function with_applied(pool, dir, fn)
  local list, err = M.list(dir)
  if not list then return nil, err end
  return locked(pool, function(c)
    local done, aerr = applied(c)
    if not done then return nil, aerr end
    return fn(c, list, done)
  end)
end

function M.status(pool, dir)
  return with_applied(pool, dir, function(_, list, done)
    local out = {}
    for _, m in ipairs(list) do
      out[#out + 1] = { version = m.version, name = m.name, applied_at = done[m.version] and done[m.version].at }
    end
    return out
  end)
end

function M.up(pool, dir)
  return with_applied(pool, dir, function(c, list, done)
    local out = {}
    for _, m in ipairs(list) do
      if not done[m.version] then
        local ok, merr = apply(c, m.up, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
        if not ok then return nil, merr end
        out[#out + 1] = m.version
      end
    end
    return out
  end)
end

function M.down(pool, n, dir)
  return with_applied(pool, dir, function(c, list, done)
    local by = {}
    for _, m in ipairs(list) do by[m.version] = m end
    local versions = {}
    for v in pairs(done) do versions[#versions + 1] = v end
    table.sort(versions, function(a, b) return a > b end)
    local out = {}
    for i = 1, math.min(n, #versions) do
      local v = versions[i]
      local m = by[v]
      if not m or not m.down then return nil, ("migration %d has no .down.sql"):format(v) end
      local ok, merr = apply(c, m.down, "DELETE FROM schema_migrations WHERE version = $1", v)
      if not ok then return nil, merr end
      out[#out + 1] = v
    end
    return out
  end)
end

return M
