-- weighted: like majority, but each member's vote counts its step's
-- `weight` (default 1), so a trusted agent can outvote two weak ones.
-- Info: agreed = members behind the winner, total = all members,
-- score = the winner's weight / the weight of all members (failed ones
-- included).
local votes = require "chorus.votes"

return {
  name = "weighted",
  version = "1.0.0",
  description = "Answer with the most weight behind it; score = its weight share.",
  schema = { fields = {
    key = { type = "string", description = "compare only this field of each answer" },
  } },
  aggregate = function(results, opts)
    local t, err = votes.tally(results, opts, "weight")
    if not t then return nil, err end
    local score = t.total_weight > 0 and t.weight / t.total_weight or 0
    return t.winner, { agreed = t.count, total = t.total, score = score }
  end,
}
