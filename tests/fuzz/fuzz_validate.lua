-- tests/fuzz/fuzz_validate.lua: the Lua half of the fuzz_validate target.
-- An input that decodes as JSON goes to validate.config against the
-- built-in registry's snapshot (agents/, strategies/ of the source tree).
--
-- The check fails when validate.config raises; when it returns neither a
-- config nor a non-empty error list; when an error lacks a string path or
-- message; or, for a valid config, when its stored form
-- (validate.document(cfg)) does not validate again to the same normalized
-- config (compared as chorus.json.canonical text), both as is and after a
-- JSON encode/decode round trip (what a store and the API do to it).
local json = require "chorus.json"
local registry = require "chorus.engine.registry"
local validate = require "chorus.engine.validate"
local log = require "chorus.log"
local fuzz_mutate = require "fuzz_mutate"

local M = {}

local snap

function M.setup()
  log.set_level("error")
  local reg = registry.new({ dirs = registry.default_dirs() })
  local errs
  snap, errs = reg:load()
  if #errs > 0 then return nil, "the built-in registry has errors: " .. tostring(errs[1].message) end
  return true
end

-- run(doc) -> ok, cfg, errs | false, traceback
local function run(doc)
  return xpcall(validate.config, debug.traceback, doc, snap)
end

local function check_errors(errs)
  if type(errs) ~= "table" or #errs == 0 then
    return "returned neither a config nor an error list (" .. type(errs) .. ")"
  end
  for i, e in ipairs(errs) do
    if type(e) ~= "table" or type(e.path) ~= "string" or type(e.message) ~= "string" then
      return ("error %d lacks a string path or message: path %s, message %s"):format(i,
        tostring(type(e) == "table" and e.path), tostring(type(e) == "table" and e.message))
    end
  end
end

-- again(cfg, doc, how) -> nil | what failed: doc (the stored form of cfg)
-- must validate to cfg again.
local function again(cfg, c1, doc, how)
  local ok, cfg2, errs2 = run(doc)
  if not ok then return how .. ": validate.config raised: " .. tostring(cfg2) end
  if cfg2 == nil then
    return how .. ": the normalized config does not validate again:\n"
      .. validate.format_errors(errs2 or {})
  end
  local c2, e2 = json.canonical(cfg2)
  if not c2 then return how .. ": cannot canonicalize the config validated again: " .. tostring(e2) end
  if c1 ~= c2 then
    return ("%s: validating again changes the config:\n  first  %s\n  second %s"):format(how, c1, c2)
  end
  return nil
end

function M.one(data)
  local doc = json.decode(data)
  if doc == nil then return true end
  local ok, cfg, errs = run(doc)
  if not ok then return nil, "validate.config raised: " .. tostring(cfg) end
  if cfg == nil then
    local why = check_errors(errs)
    if why then return nil, why end
    return true
  end
  if type(cfg) ~= "table" or errs ~= nil then return nil, "returned a config and errors" end
  local c1, e1 = json.canonical(cfg)
  if not c1 then return nil, "cannot canonicalize a valid config: " .. tostring(e1) end
  local stored = validate.document(cfg)
  local why = again(cfg, c1, stored, "as is")
  if why then return nil, why end
  local text, eerr = json.encode(stored)
  if not text then return nil, "cannot encode a valid config: " .. tostring(eerr) end
  why = again(cfg, c1, json.decode(text), "after a JSON round trip")
  if why then return nil, why end
  return true
end

-- mutate(data, seed) -> data with one JSON node changed | nil
M.mutate = fuzz_mutate.mutate

return M
