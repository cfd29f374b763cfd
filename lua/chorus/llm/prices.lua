-- chorus.llm.prices: what a model's tokens cost, from prices.json files the
-- operator edits (USD, or any currency, per million tokens).
--
--   { "models": { "gpt-4o-mini": { "input": 0.15, "output": 0.60 }, ... } }
--
-- Files are layered like scripts: the built-in prices.json at the root of
-- the installation first, then one in each --scripts directory; a later
-- file's entry replaces an earlier one for the same model. Keys starting
-- with "_" (comments) and an entry's "note" are ignored. A file that does
-- not parse or has a bad entry is refused whole and the one loaded before
-- stays (its errors are in errors()); files are watched and reloaded when
-- they change.
--
--   use(dirs, {watch = bool})  the layers (the engine calls it); without
--                              it, the built-in file alone, not watched
--   cost(model, prompt_tokens, completion_tokens) -> cost, note
--       note is nil when the model has a price, else a sentence saying
--       there is none (the cost is then 0: never a made-up number). A
--       model is found by its name, or by the longest priced name it
--       extends with "-..." (gpt-4o-mini-2024-07-18 -> gpt-4o-mini).
--   lookup(model) -> {input, output, name, file} | nil
--   reload() -> true | nil, errors ; errors() -> {{file, message}...}
--   unwatch()
local native = require "chorus.native"
local json = require "chorus.json"
local sched = require "chorus.sched"
local log = require "chorus.log"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

M.FILE = "prices.json"

local state = {
  dirs = nil,        -- nil: { native.home } at first use
  by_file = {},      -- path -> the models of the last good version
  models = nil,      -- merged: name -> entry
  resolved = {},     -- model -> entry or false (prefix lookups), per load
  errors = {},
  watches = {},
}

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function is_price(v)
  return type(v) == "number" and v >= 0 and v < 1e9
end

-- parse(text, path) -> models | nil, message
function M.parse(text, path)
  local doc, err = json.decode(text)
  if not doc then return nil, ("%s: %s"):format(path, err) end
  if type(doc) ~= "table" or json.is_array(doc) then
    return nil, ("%s: must be an object with a \"models\" object"):format(path)
  end
  for k in pairs(doc) do
    if k ~= "models" and not (type(k) == "string" and k:sub(1, 1) == "_") then
      return nil, ("%s: unknown field %q (known: models)"):format(path, tostring(k))
    end
  end
  local models = doc.models
  if type(models) ~= "table" or (next(models) ~= nil and json.is_array(models)) then
    return nil, ("%s: \"models\" must be an object of model name -> {input, output}"):format(path)
  end
  local out = {}
  for name, e in pairs(models) do
    if type(name) == "string" and name:sub(1, 1) ~= "_" then
      local where = ("%s: models.%s"):format(path, name)
      if type(e) ~= "table" then return nil, where .. ": must be an object {input, output}" end
      for k in pairs(e) do
        if k ~= "input" and k ~= "output" and k ~= "note" and not (type(k) == "string" and k:sub(1, 1) == "_") then
          return nil, ("%s: unknown field %q (known: input, output, note)"):format(where, tostring(k))
        end
      end
      if not is_price(e.input) then return nil, where .. ".input: must be a number >= 0 (price per million input tokens)" end
      if e.output ~= nil and not is_price(e.output) then
        return nil, where .. ".output: must be a number >= 0 (price per million output tokens)"
      end
      out[name] = { name = name, input = e.input, output = e.output or 0, file = path }
    end
  end
  return out
end

local function dirs()
  if not state.dirs then state.dirs = { native.home } end
  return state.dirs
end

-- reload() -> true | nil, errors (of this load; good files still apply)
function M.reload()
  local errors, merged = {}, {}
  for _, d in ipairs(dirs()) do
    local path = d .. "/" .. M.FILE
    local text = read_file(path)
    if text then
      local models, err = M.parse(text, path)
      if models then
        state.by_file[path] = models
      else
        errors[#errors + 1] = { file = path, message = err }
        log.warn("prices: %s not loaded (the previous version stays): %s", path, err)
      end
    else
      state.by_file[path] = nil
    end
    for name, e in pairs(state.by_file[path] or {}) do merged[name] = e end
  end
  state.models, state.resolved, state.errors = merged, {}, errors
  if #errors > 0 then return nil, errors end
  return true
end

local function models()
  if not state.models then M.reload() end
  return state.models
end

-- lookup(model) -> entry | nil
function M.lookup(model)
  if type(model) ~= "string" then return nil end
  local ms = models()
  local e = ms[model]
  if e then return e end
  local r = state.resolved[model]
  if r ~= nil then return r or nil end
  -- A dated or tagged variant of a priced model: the longest prefix.
  local best
  for name, entry in pairs(ms) do
    if #name < #model and model:sub(1, #name + 1) == name .. "-" and (not best or #name > #best.name) then
      best = entry
    end
  end
  state.resolved[model] = best or false
  return best
end

-- cost(model, prompt_tokens, completion_tokens) -> cost, note
function M.cost(model, prompt_tokens, completion_tokens)
  local e = M.lookup(model)
  if not e then
    return 0, ("no price for model '%s' in %s: cost not counted"):format(tostring(model), M.FILE)
  end
  return ((prompt_tokens or 0) * e.input + (completion_tokens or 0) * e.output) / 1e6
end

function M.errors()
  models()
  return state.errors
end

function M.unwatch()
  for _, h in ipairs(state.watches) do h:close() end
  state.watches = {}
end

-- use(dirs, {watch = bool, debounce_ms = 50})
function M.use(layers, opts)
  M.unwatch()
  state.dirs = layers
  state.by_file = {}
  M.reload()
  if not (opts and opts.watch) then return true end
  local pending = false
  local debounce = opts.debounce_ms or 50
  local function schedule()
    if pending then return end
    pending = true
    sched.spawn_with({ detached = true }, function()
      sched.sleep(debounce) -- editors save in bursts
      pending = false
      if M.reload() then log.info("prices: reloaded") end
    end)
  end
  for _, d in ipairs(layers) do
    local h = native.watch(d, function(file)
      if file == nil or file == M.FILE then schedule() end
    end)
    if h then state.watches[#state.watches + 1] = h end
  end
  return true
end

return M
