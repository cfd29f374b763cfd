-- chorus worker [--db URL] [--scripts DIR]: a node without HTTP: it claims
-- pending and orphaned executions from PostgreSQL and runs them, until
-- SIGTERM or SIGINT (then it stops claiming, lets running executions
-- finish for --grace-ms, and hands the rest back to other nodes).
local args = require "chorus.cli.args"
local logopts = require "chorus.cli.logopts"
local db = require "chorus.cli.db"
local log = require "chorus.log"
local sched = require "chorus.sched"
local native = require "chorus.native"

local SPEC = {
  db = db.SPEC,
  ["kb-db"] = db.KB_SPEC,
  scripts = { type = "list", arg = "DIR", help = "overlay script directory (repeatable)" },
  sandbox = { type = "flag", help = "load --scripts without os, io, ffi, debug (scripts are trusted code otherwise)" },
  concurrency = { type = "string", arg = "N", help = "executions in flight at most (default 1000)" },
  ["lease-ms"] = { type = "string", arg = "MS", help = "lease length; heartbeat every third (default 15000)" },
  ["poll-ms"] = { type = "string", arg = "MS", help = "claim poll interval besides NOTIFY (default 1000)" },
  ["grace-ms"] = { type = "string", arg = "MS", help = "on SIGTERM, time given to running executions (default 10000)" },
  ["no-callbacks"] = { type = "flag", help = "do not deliver webhooks from this node" },
  redis = { type = "string", arg = "URL", help = "Redis shared by the nodes: step cache, rate limits (default: $REDIS_URL)" },
  help = { type = "flag", short = "h", help = "show this help" },
}
local ORDER = { "db", "kb-db", "redis", "scripts", "sandbox", "concurrency", "lease-ms", "poll-ms", "grace-ms", "no-callbacks",
  "help" }
logopts.add(SPEC, ORDER)

local function num(opts, name, min)
  local v = opts[name]
  if v == nil then return true end
  local n = tonumber(v)
  if not n or n < min or n ~= math.floor(n) then
    return nil, ("--%s must be an integer >= %d"):format(name, min)
  end
  return n
end

return function(argv)
  local opts, pos = args.parse(argv, SPEC)
  if not opts then io.stderr:write("chorus worker: " .. pos .. "\n") return 2 end
  if opts.help then io.stdout:write("usage: chorus worker [options]\n\n" .. args.usage(SPEC, ORDER)) return 0 end
  local logged, lerr = logopts.apply(opts)
  if not logged then io.stderr:write("chorus worker: " .. lerr .. "\n") return 2 end
  local n = {}
  for name, min in pairs({ concurrency = 1, ["lease-ms"] = 300, ["poll-ms"] = 10, ["grace-ms"] = 0 }) do
    local v, err = num(opts, name, min)
    if not v then io.stderr:write("chorus worker: " .. err .. "\n") return 2 end
    if v ~= true then n[name] = v end
  end
  local url = db.need(opts, "worker")
  if not url then return 2 end
  local d, err = require("chorus.store.open").open(url, { pool_size = 8 })
  if not d then io.stderr:write("chorus worker: " .. err .. "\n") return 1 end
  local kb_pool, kerr = db.open_kb(opts)
  if kb_pool == nil then
    io.stderr:write("chorus worker: " .. kerr .. "\n")
    d.pool:close()
    return 1
  end
  local redis_url = opts.redis or os.getenv("REDIS_URL")
  require("chorus.run.cluster").configure({ redis_url = redis_url ~= "" and redis_url or nil })
  local engine, eerr, ecode = require("chorus.engine").new({ scripts = opts.scripts, store = d.store, watch = true,
    sandbox = opts.sandbox })
  if not engine then
    io.stderr:write("chorus worker: " .. eerr .. "\n")
    if kb_pool then kb_pool:close() end
    d.pool:close()
    return ecode == "bad_scripts" and 2 or 1
  end
  local node = require("chorus.run.node").new({ engine = engine, pool = d.pool, concurrency = n.concurrency,
    lease_ms = n["lease-ms"], poll_ms = n["poll-ms"] })
  log.set_field("node", node.node_id)
  local unlog = require("chorus.log.events").attach(engine)
  node:run({ url = url })
  -- Webhooks: signed with CHORUS_CALLBACK_SECRET.
  local deliverer = not opts["no-callbacks"] and require("chorus.run.callbacks").deliverer(d.pool, {
    secret = os.getenv("CHORUS_CALLBACK_SECRET") ~= "" and os.getenv("CHORUS_CALLBACK_SECRET") or nil,
  }):run()
  log.info("worker %s: claiming executions (concurrency %d)", node.node_id, node.concurrency)
  local stop = sched.cond()
  local hooks = {}
  for _, sig in ipairs({ "SIGTERM", "SIGINT" }) do
    hooks[#hooks + 1] = native.on_signal(sig, function(name) stop:signal(name) end)
  end
  local why = stop:wait()
  log.info("worker %s: %s, stopping", node.node_id, tostring(why))
  for _, hk in ipairs(hooks) do hk:close() end
  if deliverer then deliverer:stop() end
  node:stop({ grace_ms = n["grace-ms"] or 10000 })
  engine:close()
  if kb_pool then kb_pool:close() end
  d.pool:close()
  unlog()
  return 0
end
