-- chorus.cli.args: a small option parser for the commands.
-- spec = { name = {type = "string"|"flag"|"list", short = "x"} }.
-- parse(argv, spec) -> opts, positional | nil, err
local M = {}

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

return M
