-- chorus run CONFIG.json [--input JSON]: runs one execution in memory (no
-- server needed), with live progress on stderr and, with --json, the final
-- execution record on stdout. Exit 0 completed, 1 failed or cancelled,
-- 2 invalid input.
local args = require "chorus.cli.args"
local logopts = require "chorus.cli.logopts"
local engine_mod = require "chorus.engine"
local load = require "chorus.cli.load"
local progress = require "chorus.cli.progress"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

local SPEC = {
  input = { type = "string", arg = "JSON", help = "execution input (a JSON object)" },
  ["input-file"] = { type = "string", arg = "FILE", help = "read the input from a JSON file" },
  json = { type = "flag", help = "print the final execution record as JSON on stdout" },
  ["auto-approve"] = { type = "flag", help = "approve every approval step" },
  scripts = { type = "list", arg = "DIR", help = "overlay script directory (repeatable)" },
  sandbox = { type = "flag", help = "load --scripts without os, io, ffi, debug (scripts are trusted code otherwise)" },
  quiet = { type = "flag", short = "q", help = "no progress output" },
  ["keep-inputs"] = { type = "flag", help = "record each step's input in the record" },
  db = { type = "string", arg = "URL", help = "persist in PostgreSQL (default: $DATABASE_URL; none: in memory)" },
  ["kb-db"] = require("chorus.cli.db").KB_SPEC,
  help = { type = "flag", short = "h", help = "show this help" },
}
local ORDER = { "input", "input-file", "json", "auto-approve", "scripts", "sandbox", "db", "kb-db", "quiet", "keep-inputs", "help" }
logopts.add(SPEC, ORDER)

local function usage(out)
  out:write("usage: chorus run CONFIG.json [options]\n\n" .. args.usage(SPEC, ORDER))
end

-- Asks on the terminal for each approval step; EOF on stdin rejects.
local function prompt_approval(exec, e)
  io.stderr:write(("approve step %s (%s)? [y/N] "):format(e.step_id, e.name or e.step_id))
  io.stderr:flush()
  local line, err = native.read_line()
  if line and line:lower():match("^%s*y") then
    exec:approve(e.step_id, "terminal")
  else
    exec:reject(e.step_id, line and "rejected at the terminal" or ("no answer (" .. tostring(err) .. ")"), "terminal")
  end
end

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then
    io.stderr:write("chorus run: " .. pos .. "\n")
    return 2
  end
  if opts.help then usage(io.stdout) return 0 end
  local logged, lerr = logopts.apply(opts)
  if not logged then io.stderr:write("chorus run: " .. lerr .. "\n") return 2 end
  if #pos ~= 1 then usage(io.stderr) return 2 end

  local doc, err = load.read_json(pos[1])
  if not doc then io.stderr:write("chorus run: " .. err .. "\n") return 2 end
  local input, ierr = load.input(opts)
  if not input then io.stderr:write("chorus run: " .. ierr .. "\n") return 2 end

  local dbh
  local url = require("chorus.cli.db").url(opts)
  if url then
    local derr
    dbh, derr = require("chorus.store.open").open(url)
    if not dbh then io.stderr:write("chorus run: " .. derr .. "\n") return 1 end
  end
  local kb_pool, kerr = require("chorus.cli.db").open_kb(opts)
  if kb_pool == nil then
    io.stderr:write("chorus run: " .. kerr .. "\n")
    if dbh then dbh.pool:close() end
    return 1
  end
  local function close_pools()
    if kb_pool then kb_pool:close() end
    if dbh then dbh.pool:close() end
  end
  local engine, eerr = engine_mod.new({ scripts = opts.scripts, store = dbh and dbh.store, sandbox = opts.sandbox })
  if not engine then
    io.stderr:write("chorus run: " .. eerr .. "\n")
    close_pools()
    return 2
  end
  local function give_up(code)
    engine:close()
    close_pools()
    return code
  end
  local cfg, errors = engine:validate(doc)
  if not cfg then
    load.report_invalid(pos[1], errors)
    return give_up(2)
  end

  local input_bytes
  input, input_bytes = require("chorus.engine.limits").check_input(input, cfg.settings)
  if not input then
    io.stderr:write("chorus run: " .. input_bytes .. "\n")
    return give_up(2)
  end

  local view = not opts.quiet and progress.new(io.stderr) or nil
  -- Execution records (start, end, resumption) unless the progress view
  -- shows the same on a terminal.
  if not (view and native.isatty(2)) then require("chorus.log.events").attach(engine) end
  local exec
  engine.bus:subscribe(function(e)
    if view then view.on_event(e) end
    if e.type == "step.approval" and not opts["auto-approve"] then
      sched.spawn_with({ detached = true }, prompt_approval, exec, e)
    end
  end)
  if dbh then
    -- Durable: written to the database first, then run by this process
    -- (another node resumes it if this one dies).
    local node = require("chorus.run.node").new({ engine = engine, pool = dbh.pool, claim = false })
    node:run({ url = url })
    local r, serr = node:submit(cfg, input, { auto_approve = opts["auto-approve"] })
    if not r then
      io.stderr:write("chorus run: " .. tostring(serr) .. "\n")
      node:stop({ grace_ms = 0 })
      return give_up(1)
    end
    exec = node.running[r.execution_id]
    dbh.node = node
  else
    exec = engine:execute(cfg, input, { auto_approve = opts["auto-approve"], keep_inputs = opts["keep-inputs"],
      input_bytes = input_bytes })
  end
  -- Ctrl-C cancels the execution (in-flight agents are aborted).
  local sigint = native.on_signal("SIGINT", function() exec:cancel() end)
  exec:wait()
  sigint:close()
  engine:close()
  if dbh then dbh.node:stop({ grace_ms = 0 }) end
  close_pools()

  if not dbh and require("chorus.run.callbacks").urls(exec) then
    -- In memory nobody else will send the webhooks: this process does,
    -- with its retries, for up to 30 s. (With --db they are in the outbox.)
    local secret = os.getenv("CHORUS_CALLBACK_SECRET")
    local d = require("chorus.run.callbacks").local_deliverer({ secret = secret ~= "" and secret or nil })
    d:enqueue(exec)
    if not d:wait(30000) then d:stop() end
  end
  local rec = exec:record()
  if view then view.summary(rec) end
  if opts.json then
    local s, jerr = json.encode(rec)
    if not s then
      io.stderr:write("chorus run: cannot encode the record: " .. tostring(jerr) .. "\n")
      return 1
    end
    io.stdout:write(s, "\n")
  end
  return rec.status == "completed" and 0 or 1
end
