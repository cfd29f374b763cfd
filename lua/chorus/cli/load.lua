-- chorus.cli.load: reading a config file and the --input option, with
-- errors that say which file or option and what is wrong.
local json = require "chorus.json"

local M = {}

-- read_json(path) -> value | nil, err
function M.read_json(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, ("cannot read %s: %s"):format(path, err) end
  local s = f:read("*a")
  f:close()
  local v, jerr = json.decode(s)
  if v == nil then return nil, ("%s: %s"):format(path, jerr) end
  return v
end

-- input(opts) -> table | nil, err  (from --input JSON or --input-file FILE)
function M.input(opts)
  if opts.input and opts["input-file"] then
    return nil, "give either --input or --input-file, not both"
  end
  local v, err
  if opts.input then
    v, err = json.decode(opts.input)
    if v == nil then return nil, "--input: " .. err end
  elseif opts["input-file"] then
    v, err = M.read_json(opts["input-file"])
    if v == nil then return nil, err end
  else
    return {}
  end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, "the input must be a JSON object"
  end
  return v
end

-- report_invalid(path, errors): "PATH: N errors" then one indented
-- "path: message" line per error, on stderr.
function M.report_invalid(path, errors)
  io.stderr:write(("%s: %d error%s\n"):format(path, #errors, #errors == 1 and "" or "s"))
  for _, e in ipairs(errors) do io.stderr:write("  " .. e.path .. ": " .. e.message .. "\n") end
end

return M
