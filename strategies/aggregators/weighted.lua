-- weighted: like majority, but each member's vote counts its step's
-- `weight` (default 1), so a trusted agent can outvote two weak ones.
-- Info: agreed = members behind the winner, total = all members,
-- score = the winner's weight / the weight of all members (failed ones
-- included).
local json = require "chorus.json"

return {
  name = "weighted",
  version = "1.0.0",
  description = "Answer with the most weight behind it; score = its weight share.",
  schema = { fields = {
    key = { type = "string", description = "compare only this field of each answer" },
  } },
  aggregate = function(results, opts)
    local weight, count, first, order, total_w = {}, {}, {}, {}, 0
    for _, r in ipairs(results) do
      local w = r.weight or 1
      total_w = total_w + w
      if r.ok then
        local v = r.output
        if opts.key and type(v) == "table" then v = v[opts.key] end
        local k = json.canonical(v) or tostring(v)
        if not weight[k] then
          weight[k], count[k], first[k] = 0, 0, r.output
          order[#order + 1] = k
        end
        weight[k] = weight[k] + w
        count[k] = count[k] + 1
      end
    end
    if #order == 0 then return nil, "no member answered" end
    local best = order[1]
    for _, k in ipairs(order) do
      if weight[k] > weight[best] then best = k end
    end
    local score = total_w > 0 and weight[best] / total_w or 0
    return first[best], { agreed = count[best], total = #results, score = score }
  end,
}
