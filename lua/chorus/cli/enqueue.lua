-- chorus enqueue CONFIG.json [--input JSON] [--db URL]: writes a pending
-- execution durably and prints its trace id; any `chorus worker` (or
-- server) claims and runs it.
local args = require "chorus.cli.args"
local db = require "chorus.cli.db"
local load = require "chorus.cli.load"

local SPEC = {
  db = db.SPEC,
  input = { type = "string", arg = "JSON", help = "execution input (a JSON object)" },
  ["input-file"] = { type = "string", arg = "FILE", help = "read the input from a JSON file" },
  scripts = { type = "list", arg = "DIR", help = "overlay script directory (repeatable), for validation" },
  count = { type = "string", arg = "N", help = "enqueue N executions (default 1)" },
  help = { type = "flag", short = "h", help = "show this help" },
}
local ORDER = { "db", "input", "input-file", "scripts", "count", "help" }

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus enqueue: " .. pos .. "\n") return 2 end
  if opts.help then io.stdout:write("usage: chorus enqueue CONFIG.json [options]\n\n" .. args.usage(SPEC, ORDER)) return 0 end
  if #pos ~= 1 then io.stderr:write("usage: chorus enqueue CONFIG.json [options]\n") return 2 end
  local count = tonumber(opts.count or "1")
  if not count or count < 1 or count ~= math.floor(count) then
    io.stderr:write("chorus enqueue: --count must be a positive integer\n") return 2
  end
  local url = db.need(opts, "enqueue")
  if not url then return 2 end
  local doc, err = load.read_json(pos[1])
  if not doc then io.stderr:write("chorus enqueue: " .. err .. "\n") return 2 end
  local input, ierr = load.input(opts)
  if not input then io.stderr:write("chorus enqueue: " .. ierr .. "\n") return 2 end
  local d, derr = require("chorus.store.open").open(url)
  if not d then io.stderr:write("chorus enqueue: " .. derr .. "\n") return 1 end
  local engine, eerr = require("chorus.engine").new({ scripts = opts.scripts, store = d.store })
  if not engine then
    io.stderr:write("chorus enqueue: " .. eerr .. "\n")
    d.pool:close()
    return 2
  end
  local cfg, errors = engine:validate(doc)
  if not cfg then
    load.report_invalid(pos[1], errors)
    return 2
  end
  local node = require("chorus.run.node").new({ engine = engine, pool = d.pool, claim = false, concurrency = 0 })
  for _ = 1, count do
    local r, serr, code = node:submit(cfg, input, {})
    if not r then
      io.stderr:write("chorus enqueue: " .. tostring(serr) .. "\n")
      return code == "invalid_input" and 2 or 1
    end
    io.stdout:write(r.trace_id, "\n")
  end
  d.store.committer:flush()
  d.pool:close()
  return 0
end
