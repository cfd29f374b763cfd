-- merge: combines the members' answers instead of picking one. Object
-- answers are merged deeply, key by key; when two members disagree on a
-- key the earlier member (in step order) wins and the later one does not
-- count as agreeing. Array answers are concatenated without duplicates.
-- Info: agreed = members whose whole answer is contained in the result,
-- total = all members, score = agreed / total.
local json = require "chorus.json"

local function is_obj(v) return type(v) == "table" and not (next(v) ~= nil and json.is_array(v)) end

-- merge_into(dst, src) -> true when src fits into dst without conflict
local function merge_into(dst, src)
  local clean = true
  for k, v in pairs(src) do
    local cur = dst[k]
    if cur == nil then
      dst[k] = v
    elseif is_obj(cur) and is_obj(v) then
      clean = merge_into(cur, v) and clean
    elseif json.canonical(cur) ~= json.canonical(v) then
      clean = false
    end
  end
  return clean
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

return {
  name = "merge",
  version = "1.0.0",
  description = "Deep-merge object answers (or union array answers).",
  aggregate = function(results)
    local ok_results = {}
    for _, r in ipairs(results) do
      if r.ok then ok_results[#ok_results + 1] = r end
    end
    if #ok_results == 0 then return nil, "no member answered" end
    local arrays = 0
    for _, r in ipairs(ok_results) do
      if type(r.output) ~= "table" then
        return nil, ("merge needs object or array answers; step %s gave a %s"):format(r.step_id, type(r.output))
      end
      if next(r.output) ~= nil and json.is_array(r.output) then arrays = arrays + 1 end
    end
    if arrays > 0 and arrays < #ok_results then
      return nil, "merge cannot mix array and object answers"
    end
    local agreed, out = 0
    if arrays > 0 then
      out = json.array({})
      local seen = {}
      for _, r in ipairs(ok_results) do
        for _, x in ipairs(r.output) do
          local k = json.canonical(x) or tostring(x)
          if not seen[k] then seen[k] = true out[#out + 1] = x end
        end
      end
      agreed = #ok_results
    else
      out = {}
      for _, r in ipairs(ok_results) do
        if merge_into(out, copy(r.output)) then agreed = agreed + 1 end
      end
    end
    return out, { agreed = agreed, total = #results, score = agreed / #results }
  end,
}
