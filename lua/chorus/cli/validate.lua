-- chorus validate FILE... [--scripts DIR]: checks configs the way the API
-- will, and lists every error with its path. Exit 0 valid, 2 invalid.
local args = require "chorus.cli.args"
local engine_mod = require "chorus.engine"
local load = require "chorus.cli.load"

local SPEC = {
  scripts = { type = "list", arg = "DIR", help = "overlay script directory (repeatable)" },
  help = { type = "flag", short = "h", help = "show this help" },
}

return function(argv)
  local opts, files = args.parse(argv, SPEC)
  if not opts then return args.bad_usage("chorus validate", files, "chorus validate CONFIG.json... [options]") end
  if opts.help or #files == 0 then
    local out = opts.help and io.stdout or io.stderr
    out:write("usage: chorus validate CONFIG.json... [options]\n\nCheck configs as the API will, listing every error "
      .. "with its path.\n\noptions:\n" .. args.usage(SPEC, { "scripts", "help" })
      .. "\nexit codes: 0 every config is valid, 2 bad usage or an invalid config\n")
    return opts.help and 0 or 2
  end
  local engine, eerr = engine_mod.new({ scripts = opts.scripts })
  if not engine then
    io.stderr:write("chorus validate: " .. eerr .. "\n")
    return 2
  end
  local bad = 0
  for _, path in ipairs(files) do
    local doc, err = load.read_json(path)
    if not doc then
      io.stderr:write(err .. "\n")
      bad = bad + 1
    else
      local cfg, errors = engine:validate(doc)
      if cfg then
        io.stdout:write(("%s: valid (%s, %d steps)\n"):format(path, cfg.strategy, #cfg.steps))
      else
        bad = bad + 1
        load.report_invalid(path, errors)
      end
    end
  end
  return bad == 0 and 0 or 2
end
