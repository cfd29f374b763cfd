-- chorus.engine.validate: checks an orchestration config against the schema and
-- the registry, and returns it normalized (defaults filled in) for the
-- engine. Used by `chorus validate`, `chorus run` and the API on create and
-- update: a config is checked when it is stored, not when it runs.
--
-- Both forms are accepted: the seed's {"steps": {"steps": [...],
-- "settings": {...}}} and the flat {"steps": [...], "settings": {...}}.
-- Error paths are the paths in the document the user wrote, with 0-based
-- indexes: "steps.steps[2].dependencies[0]" (seed form) or
-- "steps[2].dependencies[0]" (flat form).
--
-- config(doc, snapshot) -> cfg | nil, errors   (errors: {path, message}...)
local schema = require "chorus.schema"
local json = require "chorus.json"
local limits = require "chorus.engine.limits"
local native = require "chorus.native"
local condition = require "chorus.engine.condition"
local template = require "chorus.template"

local ipairs, pairs, type, tostring = ipairs, pairs, type, tostring
local concat, sort, format = table.concat, table.sort, string.format
local null = json.null

local M = {}

-- Identifiers that end up in URLs, metrics labels and SQL parameters.
local NAME_PATTERN = "^[%w][%w_%.%-]*$"
local NAME_HELP = "letters, digits, '_', '.', '-'; starting with a letter or digit"
local MAX_TIMEOUT_MS = 24 * 3600 * 1000

M.DEFAULT_STEP_TIMEOUT_MS = 30000

local function ident(required, max_len)
  return { type = "string", required = required, min_len = 1, max_len = max_len or 128,
    pattern = NAME_PATTERN, pattern_help = NAME_HELP }
end

-- compensate: "agent" or {agent, params, timeout_ms}
local COMPENSATE = {
  type = "object",
  normalize = function(v) if type(v) == "string" then return { agent = v } end return v end,
  fields = {
    agent = ident(true),
    params = { type = "object", additional = true, default = {} },
    timeout_ms = { type = "integer", min = 1, max = MAX_TIMEOUT_MS, default = M.DEFAULT_STEP_TIMEOUT_MS },
  },
}

local RATE_LIMIT = {
  type = "object",
  fields = {
    per_second = { type = "number", min = 0.001, max = 1e6, required = true },
    burst = { type = "integer", min = 1, max = 1e6, default = 1 },
  },
}

local RETRY = {
  type = "object",
  fields = {
    max_attempts = { type = "integer", min = 1, max = 100, default = 1,
      description = "attempts in all, the first included" },
    backoff_ms = { type = "integer", min = 0, max = 3600000, default = 0,
      description = "wait before the 2nd attempt; doubles after each failure" },
    max_backoff_ms = { type = "integer", min = 0, max = 3600000 },
    jitter = { type = { "boolean", "number" }, min = 0, max = 1,
      description = "true or a fraction: take up to that share off each wait at random" },
  },
}

M.STEP = {
  type = "object",
  fields = {
    id = ident(true),
    name = { type = "string", max_len = 200 },
    description = { type = "string", max_len = 2000 },
    agent = ident(true),
    params = { type = "object", additional = true },
    timeout_ms = { type = "integer", min = 1, max = MAX_TIMEOUT_MS, default = M.DEFAULT_STEP_TIMEOUT_MS },
    retry = RETRY,
    dependencies = { type = "array", items = { type = "string" }, max_items = 1000 },
    output_key = { type = "string", min_len = 1, max_len = 128, pattern = "^[%a_][%w_]*$",
      pattern_help = "letters, digits and '_', not starting with a digit" },
    on_failure = { type = "string", enum = { "abort", "continue", "fallback" }, default = "abort" },
    is_fallback = { type = "boolean", default = false },
    fallback_for = { type = "string" },
    consensus_group = { type = "string", min_len = 1, max_len = 128 },
    weight = { type = "number", min = 0, max = 1e6, default = 1 },
    approval = { type = "boolean", default = false },
    compensate = COMPENSATE,
    cache = { type = "object", fields = {
      ttl_s = { type = "integer", min = 1, max = 30 * 86400, required = true,
        description = "how long a result is reused" } },
      description = "reuse the result of the same agent version, params and input (chorus.engine.step_cache)" },
    when = { type = "string", min_len = 1, max_len = 2000,
      description = "a condition over the step's input; false skips the step (chorus.engine.condition)" },
    map = { type = "string", max_len = 500, pattern = "^%s*{{[^{}]+}}%s*$",
      pattern_help = "a single placeholder naming a list, e.g. {{dep_fetch.items}}",
      description = "run the step once per item of this list; its output is the list of outputs" },
  },
}

M.SETTINGS = {
  type = "object",
  fields = {
    parallel_limit = { type = "integer", min = 1, max = 10000 },
    consensus_threshold = { type = "number", min = 0, max = 1 },
    aggregator = ident(false),
    aggregator_options = { type = "object", additional = true },
    timeout_ms = { type = "integer", min = 1, max = MAX_TIMEOUT_MS,
      description = "deadline of the whole execution" },
    output_step = { type = "string" },
    enable_monitoring = { type = "boolean" },
    callback_url = { type = "string", max_len = 2048, pattern = "^https?://[^%s]+$",
      pattern_help = "an http:// or https:// URL" },
    max_tokens = { type = "integer", min = 1, max = 1e12,
      description = "budget: tokens the whole execution may use; past it, it fails" },
    max_cost = { type = "number", min = 0, max = 1e9,
      description = "budget: cost the whole execution may reach (price table units); past it, it fails" },
    rate_limits = { type = "object", additional = RATE_LIMIT,
      description = "per agent name: {per_second, burst}, shared by every execution (and node, with Redis)" },
    max_steps = { type = "integer", min = 1, max = limits.CEILINGS.max_steps,
      description = "steps one execution may hold, declared and started at run time (default 1000)" },
    max_input_bytes = { type = "integer", min = 1024, max = limits.CEILINGS.max_input_bytes,
      description = "largest execution input, as JSON (default 1 MiB)" },
    max_output_bytes = { type = "integer", min = 1024, max = limits.CEILINGS.max_output_bytes,
      description = "largest output of one step, as JSON (default 1 MiB)" },
    max_execution_bytes = { type = "integer", min = 1024, max = limits.CEILINGS.max_execution_bytes,
      description = "the most one execution may hold: input and outputs (default 16 MiB)" },
    allow_unapproved_actions = { type = "boolean", default = false,
      description = "let agents that act on other systems (tws actions) run without approval" },
    keep_inputs = { type = "boolean", default = false,
      description = "record each step's input on its record (the admin page shows it); it holds the "
        .. "dependencies' outputs again, so it costs memory and database space" },
  },
}

M.CONFIG = {
  type = "object",
  fields = {
    name = ident(true, 200),
    description = { type = "string", max_len = 2000 },
    strategy = ident(true),
    steps = { required = true }, -- checked by hand: two forms
    settings = { type = "object", additional = true },
    metadata = { type = "object", additional = true },
  },
}

local function err(errors, path, msg, ...)
  errors[#errors + 1] = { path = path, message = format(msg, ...) }
end

-- unknown(snap, kind, name, what) -> the message for a name the registry
-- does not have: its load error when the file exists but failed to load
-- (a syntax error is told where the script is used), else "unknown".
local function unknown(snap, kind, name, what)
  for _, e in ipairs(snap.errors or {}) do
    if e.kind == kind and e.name == name then
      return format("%s '%s' failed to load (%s): %s", what, name, e.file or "?", e.message)
    end
  end
  return format("unknown %s '%s'", what, name)
end

-- Finds one cycle in the dependency graph; returns the ids on it, first
-- id repeated at the end, or nil.
local function find_cycle(steps, index_of)
  local color, stack = {}, {}
  local found
  local function visit(id)
    color[id] = 1
    stack[#stack + 1] = id
    local s = steps[index_of[id]]
    for _, d in ipairs(s.dependencies) do
      if index_of[d] and not found then
        if color[d] == 1 then
          local cyc, on = {}, false
          for _, x in ipairs(stack) do
            if x == d then on = true end
            if on then cyc[#cyc + 1] = x end
          end
          cyc[#cyc + 1] = d
          found = cyc
        elseif not color[d] then
          visit(d)
        end
      end
    end
    stack[#stack] = nil
    color[id] = 2
  end
  for _, s in ipairs(steps) do
    if s and not color[s.id] and not found and index_of[s.id] then visit(s.id) end
  end
  return found
end

-- Checks params against the agent's schema (when it declares one).
local function check_params(step, entry, path, errors)
  local mod = entry.module
  if not mod.schema then return step.params or {} end
  local s = mod.schema
  if not s.type then s = { type = "object", fields = s.fields, additional = s.additional } end
  return schema.check(step.params or {}, s, path, errors)
end

-- The check_step view's check_agent(step, name, params): a handler over
-- another agent (agents/status_handler.lua over tws) checks the params it
-- will give it, with that agent's schema and its own check_step. The
-- errors' paths are the step's "params"; the message says which agent
-- and which of its params.
local function agent_checker(snap, view)
  return function(step, name, params)
    local entry = snap.agents[name]
    if not entry then
      return { { path = "agent", message = ("works through the agent '%s': %s"):format(tostring(name),
        unknown(snap, "agents", tostring(name), "agent")) } }
    end
    local errors, out = {}, {}
    local sub = setmetatable({ agent = name, params = params or {} }, { __index = step })
    sub.params = check_params(sub, entry, "params", errors)
    local hook = entry.module.check_step
    if #errors == 0 and type(hook) == "function" then
      local ok, errs = pcall(hook, sub, view)
      if not ok then
        errors[1] = { path = "params", message = "could not be checked: " .. tostring(errs) }
      elseif type(errs) == "table" then
        for _, e in ipairs(errs) do errors[#errors + 1] = { path = e.path or "params", message = tostring(e.message) } end
      end
    end
    for i, e in ipairs(errors) do
      out[i] = { path = "params", message = ("as the %s agent's %s: %s"):format(name, e.path, e.message) }
    end
    return out
  end
end

-- check_flow(s, p, steps, index_of, errors): `when` parses and reads
-- only what the step can have (its dependencies' outputs, or the
-- execution input); `map` names a list the same way, on a step that is
-- not part of a fallback chain or a consensus group.
local function check_flow(s, p, by_id, errors)
  if type(s.when) == "string" then
    local ast, perr = condition.parse(s.when)
    if not ast then
      err(errors, p .. ".when", "syntax error %s", perr)
    else
      for _, e in ipairs(template.check_paths(s, by_id, condition.paths(ast), p .. ".when")) do
        errors[#errors + 1] = e
      end
    end
  end
  if type(s.map) == "string" then
    local path = s.map:match("{{%s*(.-)%s*}}")
    for _, e in ipairs(template.check_paths(s, by_id, { path }, p .. ".map")) do errors[#errors + 1] = e end
    if s.is_fallback or s.fallback_for or s.consensus_group then
      err(errors, p .. ".map", "a mapped step cannot be a fallback or in a consensus group")
    end
  end
end

local function check_steps(raw, base, snap, errors)
  local steps, index_of = {}, {}
  for i, rs in ipairs(raw) do
    local p = schema.join_path(base, i)
    if rs == null or type(rs) ~= "table" then
      err(errors, p, "must be an object, got %s", rs == null and "null" or schema.describe(rs))
      steps[i] = false
    else
      local s = schema.check(rs, M.STEP, p, errors)
      -- not a list: its error is reported; the graph checks see none
      if type(s.dependencies) ~= "table" then s.dependencies = json.array({}) end
      s.retry = s.retry or { max_attempts = 1, backoff_ms = 0 }
      s.params = s.params or {}
      s.name = s.name or s.id
      if s.fallback_for then s.is_fallback = true end
      steps[i] = s
      if type(s.id) == "string" then
        if index_of[s.id] then
          err(errors, p .. ".id", "duplicate step id '%s' (also steps[%d])", s.id, index_of[s.id] - 1)
        else
          index_of[s.id] = i
        end
      end
    end
  end

  local keys, by_id = {}, {}
  for id, i in pairs(index_of) do by_id[id] = steps[i] end
  for i, s in ipairs(steps) do
    if s then
      local p = schema.join_path(base, i)
      -- agent and its params
      local entry = type(s.agent) == "string" and snap.agents[s.agent]
      if type(s.agent) == "string" and not entry then
        err(errors, p .. ".agent", "%s", unknown(snap, "agents", s.agent, "agent"))
      elseif entry then
        s.params = check_params(s, entry, p .. ".params", errors)
      end
      if type(s.compensate) == "table" and type(s.compensate.agent) == "string" then
        local centry = snap.agents[s.compensate.agent]
        if not centry then
          err(errors, p .. ".compensate.agent", "%s", unknown(snap, "agents", s.compensate.agent, "agent"))
        else
          s.compensate.params = check_params(s.compensate, centry, p .. ".compensate.params", errors)
        end
      end
      -- dependencies
      local seen = {}
      for j, d in ipairs(s.dependencies) do
        local dp = schema.join_path(p .. ".dependencies", j)
        if type(d) == "string" then
          if d == s.id then
            err(errors, dp, "a step cannot depend on itself")
          elseif not index_of[d] then
            err(errors, dp, "unknown step '%s'", d)
          elseif steps[index_of[d]] and steps[index_of[d]].is_fallback then
            err(errors, dp, "'%s' is a fallback step; depend on the step it falls back for", d)
          elseif seen[d] then
            err(errors, dp, "duplicate dependency '%s'", d)
          end
          seen[d] = true
        end
      end
      -- fallbacks
      if s.fallback_for ~= nil then
        local target = index_of[s.fallback_for]
        if s.fallback_for == s.id then
          err(errors, p .. ".fallback_for", "a step cannot be its own fallback")
        elseif not target then
          err(errors, p .. ".fallback_for", "names no step ('%s')", s.fallback_for)
        end
      elseif s.is_fallback then
        err(errors, p .. ".is_fallback", "a fallback step needs fallback_for")
      end
      check_flow(s, p, by_id, errors)
      if s.output_key then
        if keys[s.output_key] then
          err(errors, p .. ".output_key", "output_key '%s' is also used by step '%s'", s.output_key, keys[s.output_key])
        else
          keys[s.output_key] = s.id
        end
      end
    end
  end
  -- on_failure = fallback needs a chain
  local has_chain = {}
  for _, s in ipairs(steps) do
    if s and s.fallback_for then has_chain[s.fallback_for] = true end
  end
  for i, s in ipairs(steps) do
    if s and s.on_failure == "fallback" and type(s.id) == "string" and not has_chain[s.id] then
      err(errors, schema.join_path(base, i) .. ".on_failure",
        "is 'fallback' but no step has fallback_for = '%s'", s.id)
    end
  end
  -- fallback chains must not loop (a falls back to b falls back to a)
  for i, s in ipairs(steps) do
    -- (a step without a valid id already has its error)
    if s and s.fallback_for and type(s.id) == "string" then
      local seen, cur = { [s.id] = true }, s
      while cur and cur.fallback_for and index_of[cur.fallback_for] do
        local nxt = steps[index_of[cur.fallback_for]]
        if not nxt or seen[nxt.id] then
          if nxt then
            err(errors, schema.join_path(base, i) .. ".fallback_for", "fallback chain loops back to '%s'", nxt.id)
          end
          break
        end
        seen[nxt.id] = true
        cur = nxt
      end
    end
  end
  return steps, index_of
end

-- config(doc, snap) -> cfg | nil, errors
function M.config(doc, snap)
  local errors = {}
  if type(doc) ~= "table" or doc == null or (next(doc) ~= nil and json.is_array(doc)) then
    return nil, { { path = "(root)", message = "a config must be a JSON object, got " .. schema.describe(doc) } }
  end
  -- Free-form parts (params, metadata) nest a little deeper in records
  -- and lists: what is accepted here must encode again when read.
  local ok, _, why = native.value_check(doc, math.huge, limits.MAX_DEPTH + 4)
  if not ok then return nil, { { path = "(root)", message = "the config " .. why } } end
  local top = schema.check(doc, M.CONFIG, "", errors)

  -- The two forms.
  local raw_steps, raw_settings, steps_path, settings_path = doc.steps, doc.settings, "steps", "settings"
  if type(raw_steps) == "table" and raw_steps ~= null and next(raw_steps) ~= nil and not json.is_array(raw_steps) then
    local inner = {}
    local wrapper = schema.check(raw_steps, { type = "object", fields = {
      steps = { required = true }, settings = { type = "object", additional = true } } }, "steps", inner)
    for _, e in ipairs(inner) do errors[#errors + 1] = e end
    raw_steps, steps_path = raw_steps.steps, "steps.steps"
    if wrapper.settings ~= nil then
      if raw_settings ~= nil and raw_settings ~= null then
        err(errors, "settings", "settings given twice (here and in steps.settings)")
      end
      raw_settings, settings_path = wrapper.settings, "steps.settings"
    end
  end
  local steps, index_of = {}, {}
  if raw_steps ~= nil and raw_steps ~= null then
    if type(raw_steps) ~= "table" or (next(raw_steps) ~= nil and not json.is_array(raw_steps)) then
      err(errors, steps_path, "must be an array of steps, got %s", schema.describe(raw_steps))
    elseif #raw_steps == 0 then
      err(errors, steps_path, "needs at least 1 step")
    elseif #raw_steps > 1000 then
      err(errors, steps_path, "allows at most 1000 steps, got %d", #raw_steps)
    else
      steps, index_of = check_steps(raw_steps, steps_path, snap, errors)
    end
  end

  -- strategy (and the extra settings it declares)
  local strat = type(top.strategy) == "string" and snap.strategies[top.strategy]
  if type(top.strategy) == "string" and not strat then
    local names = {}
    for n in pairs(snap.strategies) do names[#names + 1] = n end
    sort(names)
    local msg = unknown(snap, "strategies", top.strategy, "strategy")
    if msg:match("^unknown") then msg = format("%s (known: %s)", msg, concat(names, ", ")) end
    err(errors, "strategy", "%s", msg)
  end
  local settings_schema = M.SETTINGS
  if strat and strat.module.schema and strat.module.schema.fields then
    settings_schema = { type = "object", fields = {} }
    for k, v in pairs(M.SETTINGS.fields) do settings_schema.fields[k] = v end
    for k, v in pairs(strat.module.schema.fields) do settings_schema.fields[k] = v end
  end
  if raw_settings == nil or raw_settings == null then raw_settings = {} end
  local settings = schema.check(raw_settings, settings_schema, settings_path, errors)
  if type(settings) ~= "table" then settings = {} end -- its type error is reported
  if type(settings.aggregator) == "string" and not snap.aggregators[settings.aggregator] then
    err(errors, settings_path .. ".aggregator", "%s", unknown(snap, "aggregators", settings.aggregator, "aggregator"))
  elseif type(settings.aggregator_options) == "table" then
    -- The options go to the rule in force (ctx:aggregate's default is
    -- majority): checked against its schema, like an agent's params.
    local name = type(settings.aggregator) == "string" and settings.aggregator or "majority"
    local rule = snap.aggregators[name]
    local rs = rule and rule.module.schema
    local p = settings_path .. ".aggregator_options"
    if rule and not rs then
      if next(settings.aggregator_options) ~= nil then
        err(errors, p, "aggregator '%s' takes no options", name)
      end
    elseif rs then
      settings.aggregator_options = schema.check(settings.aggregator_options,
        { type = "object", fields = rs.fields, additional = rs.additional }, p, errors)
    end
  end
  if type(settings.output_step) == "string" and not index_of[settings.output_step] then
    err(errors, settings_path .. ".output_step", "names no step ('%s')", settings.output_step)
  end

  -- Agents' own checks of a step (a template naming a step that is not a
  -- dependency, an action without approval), once the whole config is
  -- known: check_step(step, {steps_by_id, settings}) -> {{path, message}}
  -- with paths relative to the step.
  if #errors == 0 then
    local by_id = {}
    for id, i in pairs(index_of) do by_id[id] = steps[i] end
    local view = { steps_by_id = by_id, settings = settings }
    view.check_agent = agent_checker(snap, view)
    for i, s in ipairs(steps) do
      local entry = s and snap.agents[s.agent]
      local hook = entry and entry.module.check_step
      if type(hook) == "function" then
        local p = schema.join_path(steps_path, i)
        local checked, errs = pcall(hook, s, view)
        if not checked then
          err(errors, p .. ".agent", "agent '%s' could not check this step: %s", s.agent, tostring(errs))
        elseif type(errs) == "table" then
          for _, e in ipairs(errs) do
            errors[#errors + 1] = { path = e.path and (p .. "." .. e.path) or p, message = tostring(e.message) }
          end
        end
      end
    end
  end

  -- cycles, once the graph's own references are known to be sound
  local cycle = find_cycle(steps, index_of)
  if cycle then
    err(errors, schema.join_path(steps_path, index_of[cycle[1]]) .. ".dependencies",
      "dependency cycle: %s", concat(cycle, " -> "))
  end

  if #errors > 0 then return nil, errors end
  return {
    name = top.name, description = top.description, strategy = top.strategy,
    steps = steps, settings = settings, metadata = top.metadata,
  }
end

-- document(cfg) -> the seed form of a normalized config (what the API
-- stores and returns).
function M.document(cfg)
  return {
    name = cfg.name, description = cfg.description, strategy = cfg.strategy,
    steps = { steps = cfg.steps, settings = cfg.settings }, metadata = cfg.metadata,
  }
end

-- dynamic_step(raw, snap, view) -> step | nil, message: a step a strategy
-- starts at run time (ctx:run_step{...}), checked like a declared one
-- (schema, agent, params, when; its dependencies must be steps the
-- execution has). view: {step_of = function(id) -> step, settings}.
-- raw.input (an object) is extra input for this step only.
function M.dynamic_step(raw, snap, view)
  if type(raw) ~= "table" then return nil, "a step must be a table, got " .. type(raw) end
  local errors = {}
  local fields = {}
  for k, v in pairs(raw) do
    if k ~= "input" then fields[k] = v end
  end
  if fields.dependencies == nil then fields.dependencies = json.array() end
  local s = schema.check(fields, M.STEP, "", errors)
  if type(s.dependencies) ~= "table" then s.dependencies = json.array({}) end
  s.retry = s.retry or { max_attempts = 1, backoff_ms = 0 }
  s.params = s.params or {}
  if type(s.id) == "string" then s.name = s.name or s.id end
  if s.map ~= nil then err(errors, "map", "is for declared steps (a strategy starts each item itself)") end
  if s.is_fallback or s.fallback_for then err(errors, "fallback_for", "is for declared steps") end
  local entry = type(s.agent) == "string" and snap.agents[s.agent]
  if type(s.agent) == "string" and not entry then
    err(errors, "agent", "%s", unknown(snap, "agents", s.agent, "agent"))
  elseif entry then
    s.params = check_params(s, entry, "params", errors)
  end
  for j, d in ipairs(s.dependencies) do
    if type(d) == "string" and not view.step_of(d) then
      err(errors, schema.join_path("dependencies", j), "unknown step '%s'", d)
    end
  end
  local input = raw.input
  if input ~= nil and (type(input) ~= "table" or (next(input) ~= nil and json.is_array(input))) then
    err(errors, "input", "must be an object")
  end
  if type(s.when) == "string" then
    local ok, perr = condition.parse(s.when)
    if not ok then err(errors, "when", "syntax error %s", perr) end
  end
  if #errors == 0 and entry and type(entry.module.check_step) == "function" then
    local by_id = setmetatable({}, { __index = function(_, id) return view.step_of(id) end })
    local hview = { steps_by_id = by_id, settings = view.settings }
    hview.check_agent = agent_checker(snap, hview)
    local ok, errs = pcall(entry.module.check_step, s, hview)
    if not ok then
      err(errors, "agent", "agent '%s' could not check this step: %s", s.agent, tostring(errs))
    elseif type(errs) == "table" then
      for _, e in ipairs(errs) do errors[#errors + 1] = { path = e.path or "(step)", message = tostring(e.message) } end
    end
  end
  if #errors > 0 then
    local parts = {}
    for i, e in ipairs(errors) do parts[i] = (e.path == "" and "(step)" or e.path) .. ": " .. e.message end
    return nil, ("invalid step %s: %s"):format(type(raw.id) == "string" and ("'" .. raw.id .. "'") or "",
      concat(parts, "; "))
  end
  if input ~= nil and next(input) ~= nil then s.input = input end
  return s
end

-- format_errors(errors) -> "path: message" lines
function M.format_errors(errors)
  local lines = {}
  for i, e in ipairs(errors) do lines[i] = e.path .. ": " .. e.message end
  return concat(lines, "\n")
end

return M
