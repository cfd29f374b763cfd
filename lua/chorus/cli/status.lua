-- chorus status TRACE_ID [--json] [--db URL]: an execution's record from
-- the database (the same shape as `chorus run --json`).
local args = require "chorus.cli.args"
local db = require "chorus.cli.db"
local json = require "chorus.json"

local SPEC = { db = db.SPEC, json = { type = "flag", help = "print the record as JSON" },
  help = { type = "flag", short = "h", help = "show this help" } }

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus status: " .. pos .. "\n") return 2 end
  if opts.help then io.stdout:write("usage: chorus status TRACE_ID [options]\n\n" .. args.usage(SPEC, { "db", "json", "help" })) return 0 end
  if #pos ~= 1 then io.stderr:write("usage: chorus status TRACE_ID [--json] [--db URL]\n") return 2 end
  local url = db.need(opts, "status")
  if not url then return 2 end
  local d, err = require("chorus.store.open").open(url, { pool_size = 1 })
  if not d then io.stderr:write("chorus status: " .. err .. "\n") return 1 end
  local rec, rerr = d.store:get_record(pos[1])
  d.pool:close()
  if rerr then io.stderr:write("chorus status: " .. tostring(rerr) .. "\n") return 1 end
  if not rec then io.stderr:write(("chorus status: no execution %s\n"):format(pos[1])) return 1 end
  if opts.json then
    io.stdout:write(json.encode(rec), "\n")
  else
    require("chorus.cli.progress").new(io.stdout, { color = false }).summary(rec)
  end
  return 0
end
