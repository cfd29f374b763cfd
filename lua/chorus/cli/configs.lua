-- chorus configs list|show|apply|diff: the configs a server stores.
--
-- apply FILE creates the config named in the file, or updates the one of
-- that name (a new version); a file that would change nothing is left
-- alone (no new version), so applying a directory of configs again and
-- again is safe. diff FILE shows what apply would change, as a unified
-- diff of the two documents in canonical form (keys sorted, two-space
-- indent), each as the server stores it: the file is normalized (defaults
-- filled in) by validating it with the scripts known here — the built-in
-- ones and any --scripts DIR, which should be the server's.
local args = require "chorus.cli.args"
local target = require "chorus.cli.target"
local remote = require "chorus.cli.remote"
local render = require "chorus.cli.render"
local load = require "chorus.cli.load"
local json = require "chorus.json"

local BASE = "/api/v1/orchestrations/configs"

local function say(cmd, msg)
  io.stderr:write(("chorus configs %s: %s\n"):format(cmd, msg))
end

-- connect(opts, bad) -> remote | nil, 2 (a usage error, said)
local function connect(opts, bad)
  local t, err = target.resolve(opts, { what = "configs" })
  if not t then return nil, bad(err) end
  return t.remote
end

-- The document of a config: what a file holds, what apply sends.
local DOC_FIELDS = { "name", "description", "strategy", "steps", "metadata" }

local function document_of(rec)
  local doc = {}
  for _, k in ipairs(DOC_FIELDS) do
    if rec[k] ~= json.null then doc[k] = rec[k] end
  end
  if doc.metadata == nil then doc.metadata = {} end
  return doc
end

-- read_file(cmd, path) -> doc (without "global"), global | nil
local function read_file(cmd, path)
  local doc, err = load.read_json(path)
  if doc == nil then say(cmd, err) return nil end
  if type(doc) ~= "table" or json.is_array(doc) then say(cmd, path .. ": a config must be a JSON object") return nil end
  if type(doc.name) ~= "string" or doc.name == "" then say(cmd, path .. ": the config has no \"name\"") return nil end
  local global = doc.global
  doc.global = nil
  return doc, global
end

-- normalized(doc, scripts) -> canonical document as the server stores
-- it | nil, errors: validated here, then through JSON (as it would travel).
local function normalized(doc, scripts)
  local engine, eerr = require("chorus.engine").new({ scripts = scripts })
  if not engine then return nil, { { path = "--scripts", message = eerr } } end
  local cfg, errors = engine:validate(doc)
  engine:close()
  if not cfg then return nil, errors end
  local d = require("chorus.engine.validate").document(cfg)
  d.metadata = d.metadata or {}
  return json.decode(assert(json.encode(d)))
end

-- stored(r, name) -> record | false (none of that name) | nil, err
local function stored(r, name)
  local rec, err, code = r:call("GET", BASE .. "/" .. remote.escape(name))
  if rec then return rec end
  if code == "not_found" then return false end
  return nil, err
end

local function list(opts, _, bad)
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  -- Every page: a listing is short, and a table wants them all.
  local items = {}
  while true do
    local page, err = r:call("GET", BASE, { query = { limit = 1000, offset = #items, search = opts.search } })
    if not page then say("list", err) return 1 end
    for _, c in ipairs(page.items or {}) do items[#items + 1] = c end
    if #items >= (tonumber(page.total) or 0) or #(page.items or {}) == 0 then break end
  end
  if opts.json then return render.print_json({ items = json.array(items), total = #items }) and 0 end
  items = render.denull(items)
  if #items == 0 then io.stdout:write("no configs\n") return 0 end
  local rows = {}
  for i, c in ipairs(items) do
    local steps = type(c.steps) == "table" and (c.steps.steps or c.steps) or {}
    rows[i] = { c.name, tostring(c.version), c.strategy, tostring(c.steps_count or #steps),
      c.is_active and "yes" or "no", c.is_global and "global" or (c.tenant_id or "-"), render.time(c.updated_at) }
  end
  render.table(io.stdout, { "NAME", "VERSION", "STRATEGY", "STEPS", "ACTIVE", "TENANT", "UPDATED" }, rows)
  return 0
end

local function show(opts, pos, bad)
  local version, verr = args.integer(opts, "version", 1, 1e9)
  if version == false then return bad(verr) end
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  local path = BASE .. "/" .. remote.escape(pos[1])
  if version then path = path .. "/versions/" .. version end
  local rec, err = r:call("GET", path)
  if not rec then say("show", err) return 1 end
  if opts.json then return render.print_json(rec) and 0 end
  local doc = assert(json.pretty(document_of(rec)))
  if opts.document then
    io.stdout:write(doc, "\n")
    return 0
  end
  local c = render.denull(rec)
  io.stdout:write(("config %s  version %s  %s  %s\nid %s  updated %s%s\n\n%s\n"):format(c.name, tostring(c.version),
    c.is_active and "active" or "inactive", c.is_global and "global" or ("tenant " .. tostring(c.tenant_id)),
    tostring(c.id), render.time(c.updated_at), c.updated_by and (" by " .. c.updated_by) or "", doc))
  return 0
end

-- The stored document and the file's, both canonical: text, text.
local function texts(rec, want)
  return rec and assert(json.pretty(document_of(rec))) or "", assert(json.pretty(want))
end

local function diff(opts, pos, bad)
  local doc = read_file("diff", pos[1])
  if not doc then return 2 end
  local want, errors = normalized(doc, opts.scripts)
  if not want then
    load.report_invalid(pos[1], errors)
    return 2
  end
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  local rec, err = stored(r, doc.name)
  if rec == nil then say("diff", err) return 2 end
  local old, new = texts(rec, want)
  local d = require "chorus.cli.diff"
  local out = d.unified(d.lines(old), d.lines(new), {
    from = rec and ("%s version %s (%s)"):format(doc.name, tostring(rec.version), r.base) or "/dev/null",
    to = pos[1] })
  if not out then return 0 end
  io.stdout:write(out)
  return 1
end

local function apply(opts, pos, bad)
  local doc, global = read_file("apply", pos[1])
  if not doc then return 2 end
  local r, rcode = connect(opts, bad)
  if not r then return rcode end
  local rec, err = stored(r, doc.name)
  if rec == nil then say("apply", err) return 1 end
  local body = {}
  for k, v in pairs(doc) do body[k] = v end
  body.global = global
  local res, code
  if not rec then
    res, err, code = r:call("POST", BASE, { body = body })
    if res then
      io.stdout:write(("created config %s: version %s (id %s)\n"):format(res.name, tostring(res.version), tostring(res.id)))
    end
  else
    -- Unchanged when it normalizes here to what is stored. When it does
    -- not validate here (scripts only the server has), the server decides.
    local want = normalized(doc, opts.scripts)
    if want then
      local old, new = texts(rec, want)
      if old == new then
        io.stdout:write(("config %s unchanged: version %s\n"):format(rec.name, tostring(rec.version)))
        return 0
      end
    end
    res, err, code = r:call("PUT", BASE .. "/" .. remote.escape(rec.id), { body = body })
    if res then
      io.stdout:write(("updated config %s: version %s -> %s\n"):format(res.name, tostring(rec.version),
        tostring(res.version)))
    end
  end
  if not res then
    say("apply", pos[1] .. ": " .. err)
    return code == "validation_failed" and 2 or 1
  end
  return 0
end

local JSON = { type = "flag", help = "print the API's record as JSON" }
local SCRIPTS = { type = "list", arg = "DIR",
  help = "script directory the server also loads, to normalize the file (repeatable)" }

return args.group({
  name = "configs",
  about = "The orchestration configs a server stores: list them, show one, apply a file, diff a file.",
  common = { server = target.SERVER }, common_order = { "server" },
  footer = target.SERVER_FOOTER,
  commands = {
    { name = "list", args = "[options]", about = "List the configs (yours and the global ones), by name.", run = list,
      default = true, spec = { search = { type = "string", arg = "TEXT", help = "only names or descriptions holding TEXT" },
        json = JSON }, order = { "search", "json" } },
    { name = "show", args = "NAME [options]", about = "Show a config: its version, state and document.", min = 1, max = 1,
      run = show, spec = { json = JSON, document = { type = "flag", help = "print only the document (what apply takes)" },
        version = { type = "string", arg = "N", help = "an earlier version" } }, order = { "document", "version", "json" } },
    { name = "apply", args = "FILE [options]", about = "Create the config FILE names, or update it to FILE (a new version).",
      min = 1, max = 1, run = apply, spec = { scripts = SCRIPTS }, order = { "scripts" },
      exit_codes = "exit codes: 0 applied or unchanged, 1 failed, 2 bad usage or an invalid config" },
    { name = "diff", args = "FILE [options]", about = "What apply FILE would change, as a unified diff of the documents.",
      min = 1, max = 1, run = diff, spec = { scripts = SCRIPTS }, order = { "scripts" },
      exit_codes = "exit codes (as diff's): 0 no change, 1 changes, 2 trouble (bad usage, invalid file, no server)" },
  },
})
