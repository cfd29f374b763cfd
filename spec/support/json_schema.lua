-- spec/support/json_schema.lua: a JSON Schema validator for the subset the
-- OpenAPI document uses (chorus.api.openapi), so the spec can check real
-- responses against it inside the binary, with no npm validator between:
-- $ref (local), type (one or a list; integer; null), enum, properties,
-- required, additionalProperties (false or a schema), items, oneOf, anyOf,
-- allOf, minimum, maximum, minLength, maxLength, minItems, maxItems.
-- format and description are annotations. A keyword outside the subset is
-- an error of the document, so the subset cannot silently grow.
--
--   validate(doc, schema, value) -> true | nil, {"path: problem", ...}
-- value is as chorus.json decodes it (null is json.null; an empty table is
-- both an empty array and an empty object: JSON text cannot tell here).
local json = require "chorus.json"

local M = {}

local KNOWN = { ["$ref"] = true, type = true, enum = true, properties = true, required = true,
  additionalProperties = true, items = true, oneOf = true, anyOf = true, allOf = true, minimum = true,
  maximum = true, minLength = true, maxLength = true, minItems = true, maxItems = true, format = true,
  description = true, default = true }

local function resolve(doc, ref)
  local node = doc
  for part in ref:gsub("^#/", ""):gmatch("[^/]+") do
    node = type(node) == "table" and node[part] or nil
  end
  if node == nil then error("unresolvable $ref " .. ref) end
  return node
end
M.resolve = resolve

local function kind(v)
  if v == json.null then return "null" end
  local t = type(v)
  if t == "table" then
    if next(v) == nil then return "empty" end
    return json.is_array(v) and "array" or "object"
  end
  return t -- string, number, boolean
end

local function fits(want, v)
  local k = kind(v)
  if want == k then return true end
  if want == "integer" then return k == "number" and v % 1 == 0 end
  if k == "empty" then return want == "array" or want == "object" end
  return false
end

local function check(doc, s, v, path, errs)
  if type(s) ~= "table" then error("schema at " .. path .. " is not an object") end
  for k in pairs(s) do
    if not KNOWN[k] then error(("schema keyword %q (at %s) is outside the validated subset"):format(k, path)) end
  end
  if s["$ref"] then return check(doc, resolve(doc, s["$ref"]), v, path, errs) end
  local n0 = #errs
  if s.type then
    local types = type(s.type) == "table" and s.type or { s.type }
    local ok = false
    for _, t in ipairs(types) do if fits(t, v) then ok = true break end end
    if not ok then
      errs[#errs + 1] = ("%s: %s is not of type %s"):format(path, kind(v), table.concat(types, "|"))
      return
    end
  end
  if s.enum then
    local ok = false
    for _, e in ipairs(s.enum) do if e == v then ok = true break end end
    if not ok then errs[#errs + 1] = ("%s: %s is not one of the enum"):format(path, tostring(v)) end
  end
  local k = kind(v)
  if k == "number" then
    if s.minimum and v < s.minimum then errs[#errs + 1] = ("%s: %s < minimum %s"):format(path, v, s.minimum) end
    if s.maximum and v > s.maximum then errs[#errs + 1] = ("%s: %s > maximum %s"):format(path, v, s.maximum) end
  elseif k == "string" then
    if s.minLength and #v < s.minLength then errs[#errs + 1] = path .. ": shorter than minLength" end
    if s.maxLength and #v > s.maxLength then errs[#errs + 1] = path .. ": longer than maxLength" end
  end
  if (k == "object" or k == "empty") and (s.properties or s.required or s.additionalProperties ~= nil) then
    for _, r in ipairs(s.required or {}) do
      if v[r] == nil then errs[#errs + 1] = ("%s: required property %q is missing"):format(path, r) end
    end
    for key, val in pairs(v) do
      local sub = s.properties and s.properties[key]
      local p = path .. "." .. tostring(key)
      if sub then
        check(doc, sub, val, p, errs)
      elseif s.additionalProperties == false then
        errs[#errs + 1] = ("%s: property %q is not allowed"):format(path, tostring(key))
      elseif type(s.additionalProperties) == "table" then
        check(doc, s.additionalProperties, val, p, errs)
      end
    end
  end
  if (k == "array" or k == "empty") and type(v) == "table" then
    if s.minItems and #v < s.minItems then errs[#errs + 1] = path .. ": fewer than minItems" end
    if s.maxItems and #v > s.maxItems then errs[#errs + 1] = path .. ": more than maxItems" end
    if s.items then
      for i, item in ipairs(v) do check(doc, s.items, item, ("%s[%d]"):format(path, i - 1), errs) end
    end
  end
  if s.allOf then
    for _, sub in ipairs(s.allOf) do check(doc, sub, v, path, errs) end
  end
  for _, word in ipairs({ "oneOf", "anyOf" }) do
    if s[word] then
      local matched = 0
      for _, sub in ipairs(s[word]) do
        local e = {}
        check(doc, sub, v, path, e)
        if #e == 0 then matched = matched + 1 end
      end
      if matched == 0 or (word == "oneOf" and matched > 1) then
        errs[#errs + 1] = ("%s: matches %d of the %s schemas"):format(path, matched, word)
      end
    end
  end
  return #errs == n0
end

function M.validate(doc, schema, value)
  local errs = {}
  check(doc, schema, value, "(root)", errs)
  if #errs > 0 then return nil, errs end
  return true
end

return M
