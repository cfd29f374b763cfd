-- majority: the answer most members gave wins. Answers are compared as
-- canonical JSON (key order does not matter); with opts.key only that
-- field of each answer is compared. A tie goes to the answer given first
-- (in step order). Failed members count in the total but cast no vote.
-- Info: agreed = members behind the winner, total = all members,
-- score = agreed / total.
local votes = require "chorus.votes"

return {
  name = "majority",
  version = "1.0.0",
  description = "Most common answer (canonical JSON); score = agreed / total.",
  schema = { fields = {
    key = { type = "string", description = "compare only this field of each answer" },
  } },
  aggregate = function(results, opts)
    local t, err = votes.tally(results, opts, "count")
    if not t then return nil, err end
    return t.winner, { agreed = t.count, total = t.total, score = t.count / t.total }
  end,
}
