-- majority: the answer most members gave wins. Answers are compared as
-- canonical JSON (key order does not matter); with opts.key only that
-- field of each answer is compared. A tie goes to the answer given first
-- (in step order). Failed members count in the total but cast no vote.
-- Info: agreed = members behind the winner, total = all members,
-- score = agreed / total.
local json = require "chorus.json"

return {
  name = "majority",
  version = "1.0.0",
  description = "Most common answer (canonical JSON); score = agreed / total.",
  schema = { fields = {
    key = { type = "string", description = "compare only this field of each answer" },
  } },
  aggregate = function(results, opts)
    local votes, first, order = {}, {}, {}
    for _, r in ipairs(results) do
      if r.ok then
        local v = r.output
        if opts.key and type(v) == "table" then v = v[opts.key] end
        local k = json.canonical(v) or tostring(v)
        if not votes[k] then
          votes[k], first[k] = 0, r.output
          order[#order + 1] = k
        end
        votes[k] = votes[k] + 1
      end
    end
    if #order == 0 then return nil, "no member answered" end
    local best = order[1]
    for _, k in ipairs(order) do
      if votes[k] > votes[best] then best = k end
    end
    local total = #results
    return first[best], { agreed = votes[best], total = total, score = votes[best] / total }
  end,
}
