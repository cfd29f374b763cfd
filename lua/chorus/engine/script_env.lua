-- chorus.engine.script_env: how a script file (a strategy, an agent, an
-- aggregation rule) is loaded and what it sees.
--
-- Script directories are trusted code: a script can do what Lua can
-- (os.execute, io.open, ffi) unless the server runs with --sandbox. What
-- holds either way: every function a script defines, or loads later with
-- load/loadstring/loadfile/dofile, runs with the JIT off and is known to
-- the watchdog as script code (native.script_source), so a runaway loop
-- is interrupted ("cpu budget exceeded") and never freezes the node —
-- LuaJIT checks no hook inside compiled traces.
--
-- With sandbox, a script of an overlay directory (--scripts; the
-- built-ins are the engine's own) gets no os, io, ffi, debug, jit,
-- package, getfenv/setfenv, and can require only the public scripting
-- modules (M.PUBLIC) and pure libraries.
--
--   load(path, src, sandbox) -> chunk (jit off, env set) | nil, err
local native = require "chorus.native"

local M = {}

-- What a sandboxed script may require.
M.PUBLIC = {
  ["chorus.sched"] = true, ["chorus.json"] = true, ["chorus.http"] = true, ["chorus.http.client"] = true,
  ["chorus.http.sse"] = true, ["chorus.template"] = true, ["chorus.log"] = true, ["chorus.votes"] = true,
  ["chorus.schema"] = true, ["chorus.engine.limits"] = true, ["chorus.handler"] = true, ["chorus.text"] = true,
  ["chorus.base64"] = true,
  ["string.buffer"] = true, ["cjson"] = true, ["cjson.safe"] = true,
  ["table.new"] = true, ["table.clear"] = true, ["table.isempty"] = true, ["table.nkeys"] = true,
  ["table.clone"] = true, ["table.isarray"] = true,
}

local SAFE_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
  "tostring", "type", "unpack", "xpcall", "rawequal", "rawget", "rawset", "setmetatable", "print",
  "_VERSION" }
local SAFE_LIBS = { "string", "table", "math", "coroutine", "bit" }

-- adopt(fn, env): fn is script code from now on.
local function adopt(fn, env)
  jit.off(fn, true)
  local info = debug.getinfo(fn, "S")
  native.script_source(info.source)
  if env then setfenv(fn, env) end
  return fn
end
M.adopt = adopt

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- The loaders a script gets: what they load is script code of the same
-- environment. A chunk without a name of its own is named after the
-- script that loaded it, so its errors say where.
local function loaders(env, path)
  local default = "=(loaded by " .. path .. ")"
  env.loadstring = function(s, name)
    local f, err = loadstring(s, name or default)
    if not f then return nil, err end
    return adopt(f, env)
  end
  env.load = function(chunk, name)
    local f, err = load(chunk, name or default)
    if not f then return nil, err end
    return adopt(f, env)
  end
end

local function trusted_env(path)
  local env = setmetatable({}, { __index = _G })
  loaders(env, path)
  env.loadfile = function(p)
    local f, err = loadfile(p)
    if not f then return nil, err end
    return adopt(f, env)
  end
  env.dofile = function(p)
    local f = assert(env.loadfile(p))
    return f()
  end
  return env
end

local function sandbox_env(path)
  local env = {}
  for _, k in ipairs(SAFE_GLOBALS) do env[k] = _G[k] end
  for _, k in ipairs(SAFE_LIBS) do env[k] = copy(_G[k]) end
  env.string.dump = nil
  -- getmetatable("") would hand out the real string library.
  env.getmetatable = function(v)
    if type(v) ~= "table" then return nil end
    return getmetatable(v)
  end
  env.require = function(name)
    if not M.PUBLIC[name] then
      error(("module '%s' is not available to scripts in --sandbox (allowed: the chorus scripting modules)")
        :format(tostring(name)), 2)
    end
    return require(name)
  end
  env._G = env
  loaders(env, path)
  return env
end

-- load(path, src, sandbox) -> chunk | nil, err
function M.load(path, src, sandbox)
  local chunk, err = loadstring(src, "@" .. path)
  if not chunk then return nil, err end
  local env = sandbox and sandbox_env(path) or trusted_env(path)
  return adopt(chunk, env)
end

return M
