-- chorus.api.openapi: the OpenAPI 3.1 document of the API, built once
-- (GET /api/v1/openapi.json serves it; the admin page renders it).
--
-- Every route the router serves is here (spec/01-unit/18-openapi_spec.lua
-- fails for a route that is not, and validates real responses against
-- these schemas). The config step and settings schemas are converted from
-- the validator's own (chorus.engine.validate), so they cannot drift from what
-- is enforced. WebSocket routes are described as GET operations whose
-- description gives the messages, which OpenAPI has no way to express.
local validate = require "chorus.engine.validate"
local errors = require "chorus.api.errors"
local present = require "chorus.api.present"
local json = require "chorus.json"

local M = {}

local function ref(name) return { ["$ref"] = "#/components/schemas/" .. name } end
local function nullable(t) return { type = { t, "null" } } end
local function arr(items) return { type = "array", items = items } end
local ANY = {}

-- obj(props, required, extra) -> an object schema
local function obj(props, required, extra)
  local s = { type = "object", properties = props }
  if required and #required > 0 then s.required = required end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

-- from_chorus(schema) -> JSON Schema for a chorus.schema description.
local TYPE = { string = "string", number = "number", integer = "integer", boolean = "boolean",
  object = "object", array = "array" }
local function from_chorus(s)
  local out = {}
  local t = s.type
  if type(t) == "table" then
    local list = {}
    for _, x in ipairs(t) do if TYPE[x] then list[#list + 1] = TYPE[x] end end
    out.type = list
  elseif t and t ~= "any" then
    out.type = TYPE[t] or t
  end
  if s.enum then out.enum = s.enum end
  if s.min then out.minimum = s.min end
  if s.max then out.maximum = s.max end
  if s.min_len then out.minLength = s.min_len end
  if s.max_len then out.maxLength = s.max_len end
  if s.min_items then out.minItems = s.min_items end
  if s.max_items then out.maxItems = s.max_items end
  if s.default ~= nil then out.default = s.default end
  local desc = s.description
  if s.pattern_help then desc = (desc and desc .. "; " or "") .. s.pattern_help end
  if desc then out.description = desc end
  if s.items then out.items = from_chorus(s.items) end
  if s.fields then
    if not out.type then out.type = "object" end
    out.properties = {}
    local req = {}
    for name, f in pairs(s.fields) do
      out.properties[name] = from_chorus(f)
      if f.required then req[#req + 1] = name end
    end
    table.sort(req)
    if #req > 0 then out.required = req end
    if s.additional == true then
      out.additionalProperties = true
    elseif type(s.additional) == "table" then
      out.additionalProperties = from_chorus(s.additional)
    else
      out.additionalProperties = false
    end
  end
  return out
end
M.from_chorus = from_chorus

local STATUSES = { "pending", "running", "paused", "compensation", "completed", "failed", "cancelled" }
local STEP_STATUSES = { "pending", "running", "completed", "failed", "skipped", "paused", "cancelled" }

-- record(name, props): an object with exactly the fields chorus.api.present
-- gives that shape, every one always there (null when unknown). A field
-- given without a schema here, or documented and not given, is a bug the
-- document's spec finds.
local function record(name, props, extra)
  local required = {}
  for i, f in ipairs(present.FIELDS[name]) do
    assert(props[f], ("openapi: %s.%s has no schema"):format(name, f))
    required[i] = f
  end
  for f in pairs(props) do
    local known = false
    for _, g in ipairs(required) do if g == f then known = true end end
    assert(known, ("openapi: %s.%s is not a field chorus.api.present gives"):format(name, f))
  end
  return obj(props, required, extra or { additionalProperties = false })
end

local function error_codes()
  local codes = { "internal_error", "timeout" } -- the HTTP server's own (chorus.http.server)
  for code in pairs(errors.STATUS) do codes[#codes + 1] = code end
  table.sort(codes)
  return codes
end

local function schemas()
  local usage = obj({ tokens = { type = "number" }, cost = { type = "number" } }, { "tokens", "cost" })
  local metrics = obj({ latency_ms = nullable("number"), tokens = { type = "number" }, cost = { type = "number" } },
    { "latency_ms", "tokens", "cost" }, { additionalProperties = false })
  local time = { type = "string", format = "date-time", description = "RFC 3339, UTC, milliseconds" }
  local ntime = { type = { "string", "null" }, format = "date-time",
    description = "RFC 3339, UTC, milliseconds; null until it happens" }
  local summary = {
    id = { type = "string", format = "uuid" }, trace_id = { type = "string", format = "uuid" },
    config = { type = "string", description = "the config's name" },
    config_id = { type = { "string", "null" }, description = "null: an ad hoc execution (config in the request)" },
    config_version = { type = { "integer", "null" }, description = "the config's version it ran" },
    strategy = nullable("string"), status = { type = "string", enum = STATUSES }, error = nullable("string"),
    user_id = nullable("string"), tenant_id = nullable("string"),
    session_id = { type = { "string", "null" }, description = "the client's session (execute's session_id)" },
    metadata = { type = "object", description = "execute's metadata ({} when none)" },
    created_at = time, started_at = ntime,
    paused_at = { type = { "string", "null" }, format = "date-time",
      description = "when the current pause began (RFC 3339); null unless status is paused" },
    finished_at = ntime, metrics = metrics,
  }
  local execution = {}
  for k, v in pairs(summary) do execution[k] = v end
  for k, v in pairs({ strategy_version = nullable("string"), input = { type = "object" }, output = ANY,
    answered_by = nullable("string"), consensus = ANY,
    node_id = { type = { "string", "null" }, description = "the node that runs (or ran) it" },
    claims = { type = "integer", description = "times a node claimed it from PostgreSQL (more than 1: resumed "
      .. "after its node died); 0 in memory, where nothing is claimed" },
    steps = arr(ref("StepRun")) }) do execution[k] = v end
  return {
    Error = obj({ error = obj({
      code = { type = "string", enum = error_codes(),
        description = "stable, machine-readable; the HTTP status follows from it" },
      message = { type = "string", description = "for people: what is wrong and where" },
      details = arr(ref("ErrorDetail")),
    }, { "code", "message" }) }, { "error" }),
    ErrorDetail = obj({
      path = { type = "string", description = "where: a field of the body (steps.steps[2].agent), query.NAME, or (root)" },
      message = { type = "string" },
    }, { "path", "message" }),
    Step = from_chorus(validate.STEP),
    Settings = from_chorus(validate.SETTINGS),
    StepsDocument = obj({ steps = arr(ref("Step")), settings = ref("Settings") }, { "steps" },
      { description = "the seed form: steps and settings together" }),
    ConfigInput = obj({
      name = { type = "string", maxLength = 200, description = "letters, digits and _ . -; unique in the tenant" },
      description = { type = "string", maxLength = 2000 },
      strategy = { type = "string", description = "a strategy in the registry" },
      steps = { oneOf = { ref("StepsDocument"), arr(ref("Step")) },
        description = "the seed form {steps, settings} or the flat form [steps] with settings beside it" },
      settings = ref("Settings"),
      metadata = { type = "object" },
      is_global = { type = "boolean", description = "admins: visible to every tenant (set at creation only)" },
      global = { type = "boolean", description = "the same as is_global" },
    }, { "name", "strategy", "steps" }),
    ConfigPatch = obj({
      name = { type = "string" }, description = { type = { "string", "null" } }, strategy = { type = "string" },
      steps = { oneOf = { ref("StepsDocument"), arr(ref("Step")) } }, settings = ref("Settings"),
      metadata = { type = "object" },
      is_active = { type = "boolean", description = "alone, it changes no version" },
      is_global = { type = "boolean", description = "may be given only with its current value" },
      global = { type = "boolean", description = "the same as is_global" },
    }, nil, { additionalProperties = false }),
    Config = record("Config", {
      id = { type = "string", format = "uuid" }, name = { type = "string" },
      description = nullable("string"), strategy = { type = "string" },
      steps = ref("StepsDocument"), steps_count = { type = "integer", minimum = 0, description = "how many steps" },
      metadata = { type = "object" },
      tenant_id = { type = { "string", "null" }, description = "null for a global config" },
      owner_id = nullable("string"), updated_by = nullable("string"),
      is_global = { type = "boolean", description = "visible to every tenant" },
      is_active = { type = "boolean", description = "false: executing it answers 409 invalid_state" },
      version = { type = "integer", minimum = 1 }, created_at = time, updated_at = time,
    }),
    ConfigVersion = record("ConfigVersion", {
      id = { type = "string", description = "the config's id" }, version = { type = "integer", minimum = 1 },
      name = { type = "string" }, description = nullable("string"), strategy = { type = "string" },
      steps = ref("StepsDocument"), steps_count = { type = "integer", minimum = 0 }, metadata = { type = "object" },
      created_at = { type = "string", format = "date-time", description = "when this version was written (RFC 3339)" },
      created_by = nullable("string"),
    }),
    ConfigList = obj({ items = arr(ref("Config")), total = { type = "integer" },
      limit = { type = "integer" }, offset = { type = "integer" } }, { "items", "total", "limit", "offset" }),
    ExecuteRequest = obj({
      input = { type = "object", description = "the execution input (default {})" },
      input_data = { type = "object", description = "the seed's name for input" },
      callback_url = { type = "string", maxLength = 2048,
        description = "a webhook of this execution's own (besides the config's settings.callback_url)" },
      session_id = { type = "string", minLength = 1, maxLength = 200,
        description = "the client's session, stored and filterable (default: input.session_id when a string)" },
      metadata = { type = "object", description = "free, stored with the execution" },
    }),
    AdHocExecuteRequest = obj({ config = ref("ConfigInput"), input = { type = "object" },
      callback_url = { type = "string" }, session_id = { type = "string" }, metadata = { type = "object" } },
      { "config" }),
    ExecuteAccepted = obj({
      trace_id = { type = "string", format = "uuid" }, execution_id = { type = "string", format = "uuid" },
      status = { type = "string", enum = STATUSES }, status_url = { type = "string" },
      replayed = { type = "boolean", description = "true when an Idempotency-Key matched an earlier execution" },
    }, { "trace_id", "execution_id", "status", "status_url" }),
    StepRun = record("StepRun", {
      id = { type = "string" }, name = nullable("string"), status = { type = "string", enum = STEP_STATUSES },
      attempts = { type = "integer", minimum = 0 }, latency_ms = nullable("number"), error = nullable("string"),
      reason = { type = { "string", "null" }, description = "why a step was skipped (its condition)" },
      agent = { type = "string" }, agent_version = nullable("string"), output = ANY,
      input = { description = "the step's input (settings.keep_inputs), else null" },
      output_truncated = { type = "boolean", description = "the stored output was over the size limit" },
      tokens = { type = "number" }, cost = { type = "number" }, answered_by = nullable("string"),
      compensation = ANY, approval = ANY,
      cached = { type = "boolean", description = "answered from the step cache" },
      cached_from = { type = { "string", "null" }, description = "the execution whose result was reused" },
      rate_wait_ms = { type = { "number", "null" }, description = "time spent waiting for the agent's rate limit" },
      dynamic = { type = "boolean", description = "started at run time by the strategy (not declared)" },
      parent = nullable("string"), item_index = { type = { "integer", "null" } },
      started_at = ntime, finished_at = ntime,
    }),
    ExecutionSummary = record("ExecutionSummary", summary),
    Execution = obj(execution, (function()
      local req = {}
      for _, f in ipairs(present.FIELDS.ExecutionSummary) do req[#req + 1] = f end
      for _, f in ipairs(present.FIELDS.ExecutionExtra) do req[#req + 1] = f end
      return req
    end)(), { additionalProperties = false }),
    ExecutionList = obj({ items = arr(ref("ExecutionSummary")), total = { type = "integer" },
      limit = { type = "integer" }, offset = { type = "integer" },
      totals = { allOf = { usage }, description = "tokens and cost of every execution that matches, not just this page" },
    }, { "items", "total", "limit", "offset", "totals" }),
    Graph = obj({ config = { type = "string" }, config_id = nullable("string"),
      version = { type = "integer", description = "when as_run is false: the version drawn" },
      as_run = { type = "boolean", description = "false: the config as it ran is no longer kept; its current version is given" },
      steps = arr(obj({ id = { type = "string" }, name = nullable("string"), agent = { type = "string" },
        dependencies = arr({ type = "string" }), is_fallback = { type = "boolean" }, fallback_for = nullable("string"),
        consensus_group = nullable("string"), approval = { type = "boolean" }, on_failure = { type = "string" } },
        { "id", "agent", "dependencies" })) }, { "config", "as_run", "steps" }),
    ControlResult = obj({ trace_id = { type = "string" }, action = { type = "string" },
      status = { type = "string", enum = STATUSES } }, { "trace_id", "action" }),
    ScriptInfo = obj({ name = { type = "string" }, version = { type = "string", description = "content hash" },
      declared_version = nullable("string"), file = { type = "string" }, description = nullable("string") },
      { "name", "version", "file" }),
    LoadError = obj({ kind = { type = "string" }, name = { type = "string" }, file = { type = "string" },
      line = { type = "integer", description = "where Lua found the error, when it says" },
      message = { type = "string" } }, { "file", "message" }),
    Registry = obj({ generation = { type = "integer" }, errors = arr(ref("LoadError")),
      strategies = arr(ref("ScriptInfo")), agents = arr(ref("ScriptInfo")), aggregators = arr(ref("ScriptInfo")) },
      { "generation", "errors", "strategies", "agents", "aggregators" }),
    ReloadResult = obj({ generation = { type = "integer" }, errors = arr(ref("LoadError")),
      reloads = { type = "integer" } }, { "generation", "errors" }),
    Stats = obj({
      since = time, ["until"] = time, window_s = { type = "integer" },
      executions = obj({ total = { type = "integer" },
        by_status = { type = "object", additionalProperties = { type = "integer" } } }, { "total", "by_status" }),
      per_minute = arr(obj({ at = time,
        by_status = { type = "object", additionalProperties = { type = "integer" } } }, { "at", "by_status" })),
      step_latency = arr(obj({ agent = { type = "string" }, count = { type = "integer" },
        avg_ms = { type = "number" }, p50_ms = { type = "number" }, p99_ms = { type = "number" } },
        { "agent", "count", "p50_ms", "p99_ms" })),
      usage_by_config = arr(obj({ config = { type = "string" }, executions = { type = "integer" },
        tokens = { type = "number" }, cost = { type = "number" } }, { "config", "executions", "tokens", "cost" })),
    }, { "since", "until", "window_s", "executions", "per_minute", "step_latency", "usage_by_config" }),
    WhoAmI = obj({ role = { type = "string", enum = { "viewer", "operator", "admin" } },
      tenant_id = nullable("string"), user_id = nullable("string"), key_id = nullable("string"),
      can = obj({ read = { type = "boolean" }, write = { type = "boolean" }, execute = { type = "boolean" },
        control = { type = "boolean" }, admin = { type = "boolean" } },
        { "read", "write", "execute", "control", "admin" }) }, { "role", "can" }),
    Health = obj({ status = { type = "string" }, node = nullable("string") }, { "status" }),
    Ready = obj({ status = { type = "string", enum = { "ready", "not ready" } },
      checks = { type = "object", additionalProperties = { type = "string" } } }, { "status" }),
    Event = obj({
      type = { type = "string", enum = { "execution.accepted", "execution.status", "step.status", "step.retry",
        "step.approval", "step.compensated", "step.delta", "step.cache", "step.rate_limited", "result", "error" } },
      seq = { type = "number", description = "per execution, increasing: drop a seq already seen when replay and live overlap" },
      at = time, node = { type = "string" }, execution_id = { type = "string" }, trace_id = { type = "string" },
      status = { type = "string" }, previous = { type = "string" }, step_id = { type = "string" },
      attempts = { type = "integer" }, attempt = { type = "integer" }, delta = { type = "string" },
      agent = { type = "string" }, agent_version = { type = "string" }, latency_ms = { type = "number" },
      error = ANY, execution = { oneOf = { ref("Execution"), { type = "null" } } },
    }, { "type" }, { description = "a WebSocket message from the server" }),
  }
end

-- Responses ------------------------------------------------------------

local function content(schema) return { ["application/json"] = { schema = schema } } end
local function ok(desc, schema, headers)
  return { description = desc, content = schema and content(schema) or nil, headers = headers }
end

local ERR_DESC = {
  [400] = "bad request: a malformed parameter, invalid JSON (with where) or invalid UTF-8",
  [401] = "no key, or an invalid, expired or revoked key (WWW-Authenticate: Bearer)",
  [403] = "the key's role or tenant does not allow this",
  [404] = "no such resource (or not visible to this key)",
  [405] = "the path exists with other methods (Allow lists them)",
  [409] = "conflict: a name taken, or the execution is not in a state that allows this",
  [413] = "the body is larger than the server's --max-body",
  [415] = "the body is not application/json",
  [422] = "validation failed: every problem, each with the path of the field it names",
  [500] = "the server's own bug (logged); the body says nothing internal",
  [503] = "a dependency (database) is unavailable, or the request took too long",
}

local function err(status)
  return { ["$ref"] = "#/components/responses/E" .. status }
end

local function responses_components()
  local out = {}
  for status, desc in pairs(ERR_DESC) do
    out["E" .. status] = { description = desc, content = content(ref("Error")) }
  end
  return out
end

-- with_errors(t, list): adds the error responses every route may give.
local function with_errors(t, statuses, public)
  for _, s in ipairs(statuses) do t[tostring(s)] = err(s) end
  if not public then
    t["401"] = err(401)
    t["403"] = err(403)
  end
  t["500"] = err(500)
  return t
end

-- Parameters -----------------------------------------------------------

local function path_param(name, desc, schema)
  return { name = name, ["in"] = "path", required = true, description = desc, schema = schema or { type = "string" } }
end
local function query(name, desc, schema)
  return { name = name, ["in"] = "query", required = false, description = desc, schema = schema or { type = "string" } }
end
local P = {
  key = path_param("key", "the config's id or name (the caller's tenant first, then global)"),
  trace = path_param("trace_id", "the execution's trace id", { type = "string", format = "uuid" }),
  step = path_param("step_id", "the step's id in the config"),
  limit = query("limit", "page size", { type = "integer", minimum = 1, maximum = 1000, default = 50 }),
  offset = query("offset", "items to skip", { type = "integer", minimum = 0, default = 0 }),
}
local function json_body(schema, required, desc)
  return { required = required ~= false, description = desc, content = content(schema) }
end

local function paths()
  local CFG = "/api/v1/orchestrations/configs"
  local EX = "/api/v1/orchestrations"
  local p = {}
  local function op(method, path, o)
    p[path] = p[path] or {}
    p[path][method] = o
  end
  local location = { Location = { description = "the new resource's URL", schema = { type = "string" } } }

  op("get", "/healthz", { tags = { "health" }, summary = "Liveness", security = json.array(),
    responses = with_errors({ ["200"] = ok("the process answers", ref("Health")) }, {}, true) })
  op("get", "/readyz", { tags = { "health" }, summary = "Readiness: the database and Redis answer", security = json.array(),
    responses = with_errors({ ["200"] = ok("ready", ref("Ready")),
      ["503"] = ok("not ready (checks say which)", ref("Ready")) }, {}, true) })
  op("get", "/metrics", { tags = { "health" }, summary = "Prometheus text exposition", security = json.array(),
    responses = with_errors({ ["200"] = { description = "metrics",
      content = { ["text/plain"] = { schema = { type = "string" } } } } }, {}, true) })
  op("get", "/api/v1/openapi.json", { tags = { "meta" }, summary = "This document (public)", security = json.array(),
    responses = with_errors({ ["200"] = ok("the OpenAPI 3.1 document", { type = "object" }),
      ["304"] = { description = "not modified (If-None-Match)" } }, {}, true) })
  op("get", "/api/v1/whoami", { tags = { "meta" },
    summary = "The caller's role, tenant and user (what the admin page signs in with)",
    responses = with_errors({ ["200"] = ok("the key's principal", ref("WhoAmI")) }, { 503 }) })

  op("post", CFG, { tags = { "configs" }, summary = "Create a config", description = "operator; `global: true` needs admin",
    requestBody = json_body(ref("ConfigInput")),
    responses = with_errors({ ["201"] = ok("created", ref("Config"), location) }, { 400, 409, 413, 415, 422, 503 }) })
  op("get", CFG, { tags = { "configs" }, summary = "List configs (the caller's tenant and global ones), by name",
    parameters = { query("strategy", "only this strategy"),
      query("active", "only active (true) or inactive (false)", { type = "string", enum = { "true", "false" } }),
      query("is_active", "the same as active (the plan's name)", { type = "string", enum = { "true", "false" } }),
      query("search", "a piece of the name or description, any case"), query("owner", "only this owner's"),
      query("tenant_id", "admins: only this tenant's (and global) configs"), P.limit, P.offset },
    responses = with_errors({ ["200"] = ok("a page", ref("ConfigList")) }, { 400, 503 }) })
  op("get", CFG .. "/{key}", { tags = { "configs" }, summary = "Read a config", parameters = { P.key },
    responses = with_errors({ ["200"] = ok("the config", ref("Config")) }, { 404, 503 }) })
  op("put", CFG .. "/{key}", { tags = { "configs" }, summary = "Replace a config (version + 1)", parameters = { P.key },
    requestBody = json_body(ref("ConfigInput")),
    responses = with_errors({ ["200"] = ok("the new version", ref("Config")) }, { 400, 404, 409, 413, 415, 422, 503 }) })
  op("patch", CFG .. "/{key}", { tags = { "configs" }, summary = "Change some fields of a config",
    description = "The fields given replace the stored ones and the result is validated as a whole (version + 1). "
      .. "`is_active` alone activates or deactivates without a new version; "
      .. "executing an inactive config answers 409 `invalid_state`.",
    parameters = { P.key }, requestBody = json_body(ref("ConfigPatch")),
    responses = with_errors({ ["200"] = ok("the config", ref("Config")) }, { 400, 404, 409, 413, 415, 422, 503 }) })
  op("delete", CFG .. "/{key}", { tags = { "configs" }, summary = "Delete a config (soft: its versions and executions stay)",
    parameters = { P.key }, responses = with_errors({ ["204"] = { description = "deleted" } }, { 404, 503 }) })
  op("get", CFG .. "/{key}/versions/{version}", { tags = { "configs" }, summary = "An earlier (or the current) version",
    parameters = { P.key, path_param("version", "version number", { type = "integer", minimum = 1 }) },
    responses = with_errors({ ["200"] = ok("that version", ref("ConfigVersion")) }, { 400, 404, 503 }) })

  local idem = { name = "Idempotency-Key", ["in"] = "header", required = false,
    description = "1..200 characters: a retry with the same key (same tenant) returns the first execution "
      .. "with 200 and replayed: true",
    schema = { type = "string", minLength = 1, maxLength = 200 } }
  op("post", EX .. "/execute/{config}", { tags = { "executions" }, summary = "Start an execution of a stored config",
    description = "Answered at once (202) while it runs; follow it at status_url or over /ws/executions/{trace_id}.",
    parameters = { path_param("config", "the config's id or name"), idem },
    requestBody = json_body(ref("ExecuteRequest"), false),
    responses = with_errors({ ["202"] = ok("started", ref("ExecuteAccepted"), location),
      ["200"] = ok("an Idempotency-Key replay", ref("ExecuteAccepted")) }, { 400, 404, 409, 413, 415, 422, 503 }) })
  op("post", EX .. "/execute", { tags = { "executions" }, summary = "Start an execution of a config given in the body",
    parameters = { idem }, requestBody = json_body(ref("AdHocExecuteRequest")),
    responses = with_errors({ ["202"] = ok("started", ref("ExecuteAccepted"), location),
      ["200"] = ok("an Idempotency-Key replay", ref("ExecuteAccepted")) }, { 400, 409, 413, 415, 422, 503 }) })
  op("get", EX .. "/status/{trace_id}", { tags = { "executions" }, summary = "An execution with every step",
    parameters = { P.trace }, responses = with_errors({ ["200"] = ok("the record", ref("Execution")) }, { 400, 404, 503 }) })
  op("get", EX .. "/executions", { tags = { "executions" }, summary = "List executions, newest first, with totals",
    description = "A non-admin sees the executions it started; admins see all and may filter by tenant_id and user_id.",
    parameters = { query("config", "the config's name or id"),
      query("config_id", "the config's id only (400 if it is not a UUID)", { type = "string", format = "uuid" }),
      query("session_id", "one session's executions (execute's session_id)",
        { type = "string", minLength = 1, maxLength = 200 }),
      query("status", "one status", { type = "string", enum = STATUSES }),
      query("since", "created at or after: RFC 3339 date-time or epoch seconds"),
      query("until", "created before: RFC 3339 date-time or epoch seconds"),
      query("user_id", "admins: only this user's"), query("tenant_id", "admins: only this tenant's"), P.limit, P.offset },
    responses = with_errors({ ["200"] = ok("a page", ref("ExecutionList")) }, { 400, 503 }) })
  op("get", EX .. "/executions/{trace_id}/graph", { tags = { "executions" },
    summary = "The steps of the config an execution ran (to draw it)", parameters = { P.trace },
    responses = with_errors({ ["200"] = ok("the steps and their links", ref("Graph")) }, { 400, 404, 503 }) })
  for _, action in ipairs({ "pause", "resume", "cancel" }) do
    op("post", EX .. "/executions/{trace_id}/" .. action, { tags = { "executions" },
      summary = action:sub(1, 1):upper() .. action:sub(2) .. " an execution", parameters = { P.trace },
      responses = with_errors({ ["200"] = ok("done", ref("ControlResult")) }, { 400, 404, 409, 503 }) })
  end
  for _, action in ipairs({ "approve", "reject" }) do
    op("post", EX .. "/executions/{trace_id}/steps/{step_id}/" .. action, { tags = { "executions" },
      summary = action:sub(1, 1):upper() .. action:sub(2) .. " a step that waits for approval",
      parameters = { P.trace, P.step },
      requestBody = json_body(obj({ reason = { type = "string" } }), false, "optional reason (kept on the step)"),
      responses = with_errors({ ["200"] = ok("done", ref("ControlResult")) }, { 400, 404, 409, 415, 422, 503 }) })
  end

  op("get", "/api/v1/registry", { tags = { "registry" },
    summary = "Strategies, agents and aggregation rules with versions and load errors",
    responses = with_errors({ ["200"] = ok("the registry", ref("Registry")) }, {}) })
  op("post", "/api/v1/registry/reload", { tags = { "registry" }, summary = "Reload the scripts now (admins)",
    responses = with_errors({ ["200"] = ok("reloaded", ref("ReloadResult")) }, {}) })
  op("get", "/api/v1/stats", { tags = { "meta" }, summary = "Overview numbers over a window, from the store",
    description = "Executions created in the window by current status (and per minute), finished steps' latency by agent "
      .. "(p50/p99 from a log histogram, within 4.5 %), tokens and cost by config. The window starts on a whole minute. "
      .. "A non-admin sees its own executions' numbers.",
    parameters = { query("window", "seconds", { type = "integer", minimum = 60, maximum = 86400, default = 3600 }),
      query("tenant_id", "admins: one tenant"), query("user_id", "admins: one user") },
    responses = with_errors({ ["200"] = ok("the numbers", ref("Stats")) }, { 400, 503 }) })

  local ws_auth = { name = "api_key", ["in"] = "query", required = false,
    description = "the API key, for browsers (which cannot set headers on a WebSocket)", schema = { type = "string" } }
  local ws_token = { name = "token", ["in"] = "query", required = false,
    description = "the same as api_key (the plan's name)", schema = { type = "string" } }
  local ws_resp = function(extra, sse)
    local t = { ["101"] = { description = "switching protocols: messages are Event objects (JSON text frames)" } }
    if sse then
      -- The same messages over plain HTTP (chorus.api.event_stream).
      t["200"] = { description = "without an upgrade, with Accept: text/event-stream: the same messages as server-sent "
        .. "events, one `data:` line of JSON each; the body ends where the socket would close",
        content = { ["text/event-stream"] = { schema = { type = "string" } } } }
    end
    return with_errors(t, extra or { 400, 404 })
  end
  op("get", "/ws/executions/{trace_id}", { tags = { "websocket" }, summary = "WebSocket: follow an execution",
    description = "Sends the execution's past events (from this node, or from Redis when it ran elsewhere), then live "
      .. "ones as they happen (`execution.status`, `step.status`, `step.retry`, `step.approval`, `step.compensated`, "
      .. "`step.delta` — a piece of a streamed answer: `{step_id, attempt, delta, agent}`), then "
      .. "`{\"type\": \"result\", \"execution\": record}` and a close (1000). Events carry `seq`: drop one already seen. "
      .. "A client that does not read fast enough gets "
      .. "`{\"type\": \"error\", \"error\": {\"code\": \"slow_consumer\"}}` and close 1008.",
    parameters = { P.trace, ws_auth, ws_token }, responses = ws_resp(nil, true) })
  local ws_execute = { tags = { "websocket" }, summary = "WebSocket: start an execution and follow it",
    description = "Send `{\"input\": {...}}` first (within 30 s; `callback_url`, `session_id` and `metadata` as on "
      .. "POST execute); then `{\"type\": \"execution.accepted\", trace_id, execution_id}`, every event, the result, "
      .. "a close. Errors arrive as `{\"type\": \"error\", \"error\": {code, message}}` before a close "
      .. "(`invalid_state` for an inactive config).",
    parameters = { path_param("config", "the config's id or name"), ws_auth, ws_token }, responses = ws_resp() }
  op("get", "/ws/execute/{config}", ws_execute)
  op("get", "/api/v1/orchestrations/ws/execute/{config}", { tags = ws_execute.tags,
    summary = "WebSocket: the same as /ws/execute/{config}, at the plan's path", description = ws_execute.description,
    parameters = ws_execute.parameters, responses = ws_resp() })
  op("get", "/ws/events", { tags = { "websocket" }, summary = "WebSocket: every event of every execution (admins)",
    description = "Every event of every execution this node sees (with Redis, the cluster's), as they happen; no history.",
    parameters = { ws_auth, ws_token }, responses = ws_resp({ 400 }, true) })
  return p
end

local DESCRIPTION = [[
The REST and WebSocket API of Chorus, a multi-agent orchestration runtime.

**Authentication**: every `/api/v1` route except this document needs `Authorization: Bearer <key>`
(`chk_` + 64 hex digits). Roles: viewer (read) < operator (write configs, execute, control its
executions) < admin (everything, every tenant). WebSockets also take `?api_key=KEY` (or `?token=KEY`).

**Errors** always have the shape `{"error": {"code", "message", "details": [{"path", "message"}]}}`;
`details` lists every validation problem with the path of the field it names.

**Times** are RFC 3339 strings in UTC with milliseconds (`2026-12-03T10:15:30.123Z`) in every response,
event and webhook; query parameters take RFC 3339 or epoch seconds. Every field of a record is always
there, `null` when unknown.

**WebSocket messages** (`/ws/...`, JSON text frames, schema `Event`; `/ws/executions/{trace_id}` and
`/ws/events` also send them as server-sent events to a plain GET with `Accept: text/event-stream`): `execution.accepted`,
`execution.status` (`status`, `previous`, `error`), `step.status` (`step_id`, `status`, `attempts`,
`latency_ms`, `error`, `agent`, `agent_version`), `step.retry`, `step.approval`, `step.compensated`,
`step.delta` (`step_id`, `attempt`, `delta`: streamed text), then `result` (`execution`: the record)
and a close; or `error` (`error.code`, `error.message`) and a close.

The admin page is served at `/admin/` by the same server.]]

-- document() -> the OpenAPI document (a fresh table)
function M.document(version)
  return {
    openapi = "3.1.0",
    info = { title = "Chorus API", version = version or "1", description = DESCRIPTION },
    servers = { { url = "/" } },
    security = { { bearer = json.array() } },
    tags = {
      { name = "configs" }, { name = "executions" }, { name = "registry" }, { name = "meta" },
      { name = "health" }, { name = "websocket", description = "upgrade with GET; messages described in text" },
    },
    paths = paths(),
    components = {
      securitySchemes = { bearer = { type = "http", scheme = "bearer", bearerFormat = "chk_<64 hex digits>",
        description = "an API key: `chorus keys create --tenant T --user U --role viewer|operator|admin`" } },
      schemas = schemas(),
      responses = responses_components(),
    },
  }
end

return M
