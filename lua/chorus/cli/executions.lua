-- chorus executions list|show|cancel|pause|resume|approve|reject: the
-- executions of a running system, through a server's API (--server) or
-- straight from PostgreSQL (--db). With the database, controls take the
-- durable path the nodes use (chorus.run.node's control: a pending execution
-- nobody runs is cancelled in place; otherwise the request is recorded
-- and sent to the node running it with NOTIFY chorus_control).
local args = require "chorus.cli.args"
local target = require "chorus.cli.target"
local remote = require "chorus.cli.remote"
local render = require "chorus.cli.render"
local progress = require "chorus.cli.progress"
-- With --db, answers take the API's form: --json prints the same shape.
local present = require "chorus.api.present"

local BASE = "/api/v1/orchestrations"
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local STATUSES = { "pending", "running", "paused", "compensation", "completed", "failed", "cancelled" }

local function say(cmd, msg)
  io.stderr:write(("chorus executions %s: %s\n"):format(cmd, msg))
end

-- Sources: the same three questions answered by a server or a database.
-- Each returns value | nil, err, code.
local Server, Db = {}, {}
Server.__index, Db.__index = Server, Db

function Server:list(f)
  return self.r:call("GET", BASE .. "/executions", { query = { config = f.config, status = f.status, limit = f.limit } })
end

function Server:show(trace)
  return self.r:call("GET", BASE .. "/status/" .. remote.escape(trace))
end

function Server:control(trace, action, a)
  if a.step_id then
    return self.r:call("POST", ("%s/executions/%s/steps/%s/%s"):format(BASE, remote.escape(trace), remote.escape(a.step_id),
      action), { body = { reason = a.reason } })
  end
  return self.r:call("POST", ("%s/executions/%s/%s"):format(BASE, remote.escape(trace), action))
end

function Server:close() end

function Db:list(f)
  local items, total, totals = self.d.store:list_executions({ config = f.config, status = f.status, limit = f.limit,
    offset = 0 })
  if not items then return nil, total, "unavailable" end
  return { items = present.list(items, present.summary), total = total, limit = f.limit, offset = 0, totals = totals }
end

function Db:show(trace)
  local rec, err = self.d.store:get_record(trace)
  if err then return nil, err, "unavailable" end
  if not rec then return nil, ("no execution %s"):format(trace), "not_found" end
  return present.execution(rec)
end

function Db:control(trace, action, a)
  -- Not running in this process: control() takes the durable path. An
  -- admin's view (no scope): whoever holds the database URL may.
  local node = require("chorus.run.node").new({ pool = self.d.pool, store = self.d.store, claim = false })
  local ok, err, code = node:control(trace, action, a)
  if not ok then
    if code == "not_found" then err = ("no execution %s"):format(trace) end
    return nil, err, code or "unavailable"
  end
  local rec = self.d.store:get_record(trace)
  return { trace_id = trace, action = action, status = rec and rec.status }
end

function Db:close()
  self.d.store.committer:flush()
  self.d.pool:close()
end

-- open(cmd, opts, bad) -> source | nil, exit code (after saying why)
local function open(cmd, opts, bad)
  local t, err = target.resolve(opts, { db = true })
  if not t then return nil, bad(err) end
  if t.kind == "server" then return setmetatable({ r = t.remote }, Server) end
  local d, derr = target.open_db(t)
  if not d then say(cmd, derr) return nil, 1 end
  return setmetatable({ d = d }, Db)
end

local function trace_arg(s, bad)
  if not s:match(UUID) then
    return nil, bad(("TRACE must be a trace id (a UUID), got '%s'"):format(s))
  end
  return s:lower()
end

local function list(opts, _, bad)
  local limit, lerr = args.integer(opts, "limit", 1, 1000)
  if limit == false then return bad(lerr) end
  if opts.status then
    local known = false
    for _, s in ipairs(STATUSES) do known = known or s == opts.status end
    if not known then return bad(("--status must be one of %s"):format(table.concat(STATUSES, ", "))) end
  end
  local src, code = open("list", opts, bad)
  if not src then return code end
  local page, err = src:list({ config = opts.config, status = opts.status, limit = limit or 50 })
  src:close()
  if not page then say("list", err) return 1 end
  if opts.json then return render.print_json(page) and 0 end
  page = render.denull(page)
  if #page.items == 0 then
    io.stdout:write("no executions\n")
    return 0
  end
  local rows = {}
  for i, e in ipairs(page.items) do
    local m = e.metrics or {}
    rows[i] = { e.trace_id, e.config or "-", e.status, render.time(e.created_at), render.duration(m.latency_ms),
      tostring(m.tokens or 0), ("%.4f"):format(tonumber(m.cost) or 0), e.user_id or "-" }
  end
  render.table(io.stdout, { "TRACE", "CONFIG", "STATUS", "CREATED", "LATENCY", "TOKENS", "COST", "USER" }, rows,
    { color = progress.use_color(1), status_col = 3 })
  if page.total > #page.items then
    io.stderr:write(("%d of %d executions (newest first); --limit N shows more\n"):format(#page.items, page.total))
  end
  return 0
end

local function show(opts, pos, bad)
  local trace, tcode = trace_arg(pos[1], bad)
  if not trace then return tcode end
  local src, code = open("show", opts, bad)
  if not src then return code end
  local rec, err = src:show(trace)
  src:close()
  if not rec then say("show", err) return 1 end
  if opts.json then return render.print_json(rec) and 0 end
  rec = render.denull(rec)
  progress.new(io.stdout, { fd = 1 }).summary(rec, { full = true })
  io.stdout:write(("created %s  started %s  finished %s%s\n"):format(render.time(rec.created_at),
    render.time(rec.started_at), render.time(rec.finished_at),
    rec.user_id and (("  by %s (tenant %s)"):format(rec.user_id, rec.tenant_id or "-")) or ""))
  for _, s in ipairs(rec.steps or {}) do
    if s.status == "paused" then -- a step pauses only to wait for its approval
      io.stdout:write(("step %s awaits approval: chorus executions approve %s %s (or reject)\n"):format(s.id,
        rec.trace_id, s.id))
    end
  end
  return 0
end

local PAST = { cancel = "cancel", pause = "pause", resume = "resume", approve = "approval", reject = "rejection" }

local function control(action)
  return function(opts, pos, bad)
    local trace, tcode = trace_arg(pos[1], bad)
    if not trace then return tcode end
    local a = { step_id = pos[2], reason = opts.reason }
    if action == "approve" or action == "reject" then
      a.by = "cli:" .. (os.getenv("USER") or "unknown")
    end
    local src, code = open(action, opts, bad)
    if not src then return code end
    local res, err = src:control(trace, action, a)
    src:close()
    if not res then say(action, err) return 1 end
    if opts.json then return render.print_json(res) and 0 end
    res = render.denull(res)
    io.stdout:write(("%s of %sexecution %s requested; its status is now %s\n"):format(PAST[action],
      a.step_id and ("step " .. a.step_id .. " of ") or "", trace, res.status or "unknown"))
    return 0
  end
end

local JSON = { type = "flag", help = "print the answer as JSON (the API's shape)" }
local REASON = { type = "string", arg = "TEXT", help = "why (recorded with the step)" }

return args.group({
  name = "executions",
  about = "List, inspect and control the executions of a running system.",
  common = { server = target.SERVER, db = target.DB }, common_order = { "server", "db" },
  footer = target.FOOTER,
  commands = {
    { name = "list", args = "[options]", about = "List executions, newest first.", run = list, default = true,
      spec = { config = { type = "string", arg = "NAME", help = "only this config's (name or id)" },
        status = { type = "string", arg = "STATUS", help = "only those in this status: " .. table.concat(STATUSES, ", ") },
        limit = { type = "string", arg = "N", help = "at most N (1..1000, default 50)" }, json = JSON },
      order = { "config", "status", "limit", "json" } },
    { name = "show", args = "TRACE [options]", about = "An execution's record: every step, its output and error.",
      min = 1, max = 1, run = show, spec = { json = JSON }, order = { "json" } },
    { name = "cancel", args = "TRACE [options]", about = "Cancel an execution (in-flight agents are aborted).",
      min = 1, max = 1, run = control("cancel"), spec = { json = JSON }, order = { "json" } },
    { name = "pause", args = "TRACE [options]", about = "Pause an execution: no new step starts until resumed.",
      min = 1, max = 1, run = control("pause"), spec = { json = JSON }, order = { "json" } },
    { name = "resume", args = "TRACE [options]", about = "Resume a paused execution.",
      min = 1, max = 1, run = control("resume"), spec = { json = JSON }, order = { "json" } },
    { name = "approve", args = "TRACE STEP [options]", about = "Approve a step that awaits approval.",
      min = 2, max = 2, run = control("approve"), spec = { json = JSON }, order = { "json" } },
    { name = "reject", args = "TRACE STEP [options]", about = "Reject a step that awaits approval (it fails).",
      min = 2, max = 2, run = control("reject"), spec = { reason = REASON, json = JSON }, order = { "reason", "json" } },
  },
})
