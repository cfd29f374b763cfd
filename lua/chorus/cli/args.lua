-- chorus.cli.args: the option parser of the commands, their help texts,
-- and commands made of subcommands (`chorus executions list`).
--
--   parse(argv, spec) -> opts, positional | nil, err
--     spec = { name = {type = "string"|"flag"|"list", short = "x",
--              arg = "VALUE", help = "..."} }
--     --name VALUE, --name=VALUE, -x; "--" ends the options
--   usage(spec, order) -> the options block of a help text
--   integer(opts, name, min, max) -> n | nil (not given) | false, err
--   group(def) -> function(argv) -> exit code (see group below)
--
-- Kept rather than Debian's lua-argparse: what the commands need beyond
-- this (subcommands, per-command help) is group() below, while argparse
-- exits the process itself on --help and on errors (status 1, where the
-- commands promise 2), prints through print(), and would be one more
-- package for the binary's Lua to find at run time.
local M = {}

-- The exit codes every command documents at the end of its help.
M.EXIT_CODES = "exit codes: 0 ok, 1 failed, 2 bad usage"

function M.parse(argv, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    end
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if not name and a:match("^%-%a$") then
      for n, s in pairs(spec) do if s.short == a:sub(2) then name = n end end
      if not name then return nil, ("unknown option %s"):format(a) end
    end
    if name then
      local s = spec[name]
      if not s then return nil, ("unknown option --%s"):format(name) end
      if s.type == "flag" then
        if value ~= nil then return nil, ("option --%s takes no value"):format(name) end
        opts[name] = true
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, ("option --%s needs a value"):format(name) end
        end
        if s.type == "list" then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          opts[name] = value
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

-- usage(spec, order) -> the options block of a help text
function M.usage(spec, order)
  local lines = {}
  for _, n in ipairs(order) do
    local s = spec[n]
    local left = "--" .. n .. (s.type ~= "flag" and (" " .. (s.arg or "VALUE")) or "")
    if s.short then left = "-" .. s.short .. ", " .. left end
    lines[#lines + 1] = ("  %-28s %s"):format(left, s.help or "")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- integer(opts, name, min, max) -> n | nil when the option is absent |
-- false, "--name must be ..." when it is not a whole number in range.
function M.integer(opts, name, min, max)
  local v = opts[name]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or not tostring(v):match("^%-?%d+$") or n < min or (max and n > max) then
    return false, max and ("--%s must be a whole number from %d to %d, got '%s'"):format(name, min, max, v)
      or ("--%s must be a whole number >= %d, got '%s'"):format(name, min, v)
  end
  return n
end

M.HELP = { type = "flag", short = "h", help = "show this help" }

-- bad_usage(prog, msg, line) -> 2: the error, the usage line and where
-- the options are, on stderr (prog: "chorus serve"; line: its usage).
function M.bad_usage(prog, msg, line)
  io.stderr:write(("%s: %s\nusage: %s\n(%s --help shows the options)\n"):format(prog, msg, line, prog))
  return 2
end

-- prepare(c, common, common_order): c's full spec and order: its own
-- options, the common ones, --help.
local function prepare(c, common, common_order)
  local spec, order = {}, {}
  for k, v in pairs(common or {}) do spec[k] = v end
  for k, v in pairs(c.spec or {}) do spec[k] = v end
  spec.help = M.HELP
  for _, k in ipairs(c.order or {}) do order[#order + 1] = k end
  for _, k in ipairs(common_order or {}) do order[#order + 1] = k end
  order[#order + 1] = "help"
  c.full_spec, c.full_order = spec, order
end

-- run(c, argv, prog, footer) -> exit code: parses argv for command c
-- (prog: "chorus events" or "chorus executions list") and runs it.
local function run(c, argv, prog, footer)
  local line = (prog .. " " .. (c.args or "[options]")):gsub("%s+$", "")
  local function bad(msg) return M.bad_usage(prog, msg, line) end
  local opts, pos = M.parse(argv, c.full_spec)
  if not opts then return bad(pos) end
  if opts.help then
    io.stdout:write(("usage: %s\n\n%s\n\noptions:\n%s"):format(line, c.about, M.usage(c.full_spec, c.full_order)))
    if c.footer then io.stdout:write("\n", c.footer, "\n") end
    if footer then io.stdout:write("\n", footer, "\n") end
    io.stdout:write("\n", c.exit_codes or M.EXIT_CODES, "\n")
    return 0
  end
  if #pos < (c.min or 0) then
    local names = {}
    for w in (c.args or ""):gmatch("%u[%u_]*") do names[#names + 1] = w end
    return bad("needs " .. (names[#pos + 1] or "an argument"))
  end
  if #pos > (c.max or 0) then return bad(("unexpected argument '%s'"):format(pos[(c.max or 0) + 1])) end
  return c.run(opts, pos, bad)
end

-- command(def) -> function(argv) -> exit code: a command without
-- subcommands. def = {name = "events", args = "[TRACE] [options]",
-- about, spec, order, min, max, footer, exit_codes, run = fn(opts, pos)}
-- --help prints its usage on stdout (exit 0); a bad option or a wrong
-- number of arguments prints the error and the usage line (exit 2).
function M.command(def)
  prepare(def)
  return function(argv) return run(def, argv, "chorus " .. def.name) end
end

-- group(def) -> function(argv) -> exit code: a command made of
-- subcommands. def = {
--   name = "executions", about = "one line", footer = "text after the options",
--   common = spec of options every subcommand takes, common_order = {...},
--   commands = { { name = "list", args = "[options]", about = "...",
--     min = 0, max = 0 (positional arguments), spec = {...}, order = {...},
--     default = true (what the group runs without a subcommand),
--     exit_codes = "...", run = function(opts, pos, bad) -> exit code }, ... } }
--     bad(message) prints a usage error (the message, the usage line) and
--     returns 2, for values the parser cannot check
-- `chorus NAME --help` and `chorus NAME SUB --help` print usage on stdout
-- and exit 0; an unknown subcommand, option or a wrong number of
-- arguments prints the error and the usage line on stderr, exit 2.
function M.group(def)
  local by_name, default, names = {}, nil, {}
  for i, c in ipairs(def.commands) do
    by_name[c.name], names[i] = c, c.name
    if c.default then default = c end
    prepare(c, def.common, def.common_order)
  end

  local function group_usage(out)
    local lines = { ("usage: chorus %s COMMAND [options]"):format(def.name), "", def.about, "", "commands:" }
    local left, width = {}, 0
    for i, c in ipairs(def.commands) do
      left[i] = (c.name .. " " .. (c.args or "")):gsub("%s*%[options%]", ""):gsub("%s+$", "")
      width = math.max(width, #left[i])
    end
    for i, c in ipairs(def.commands) do
      lines[#lines + 1] = ("  %-" .. width .. "s  %s"):format(left[i], c.about)
    end
    out:write(table.concat(lines, "\n"), "\n")
    if def.common_order and #def.common_order > 0 then
      out:write("\ncommon options:\n", M.usage(def.common, def.common_order))
    end
    if def.footer then out:write("\n", def.footer, "\n") end
    out:write(("\n%s\nchorus %s COMMAND --help shows a command's options.\n"):format(M.EXIT_CODES, def.name))
  end

  return function(argv)
    local first = argv[1]
    if first == "--help" or first == "-h" or first == "help" then
      local c = first == "help" and argv[2] and by_name[argv[2]]
      if c then return run(c, { "--help" }, ("chorus %s %s"):format(def.name, c.name), def.footer) end
      group_usage(io.stdout)
      return 0
    end
    local c, rest = by_name[first or ""], {}
    if c then
      for i = 2, #argv do rest[#rest + 1] = argv[i] end
    elseif default and (first == nil or first:sub(1, 1) == "-") then
      c, rest = default, argv
    elseif first == nil then
      group_usage(io.stderr)
      return 2
    else
      io.stderr:write(("chorus %s: unknown command '%s' (commands: %s)\nusage: chorus %s COMMAND [options]\n"
        .. "(chorus %s --help shows them)\n"):format(def.name, first, table.concat(names, ", "), def.name, def.name))
      return 2
    end
    return run(c, rest, ("chorus %s %s"):format(def.name, c.name), def.footer)
  end
end

return M
