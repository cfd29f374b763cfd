-- chorus.votes: counting the answers of a consensus group, shared by the
-- majority and weighted aggregation rules (and open to custom ones).
--
--   tally(results, opts) -> tally | nil, "no member answered"
--     results: {step_id, ok, output, error, weight}...; answers compare as
--     canonical JSON (key order does not matter), or only their field
--     opts.key. tally = {winner = output, count = members behind it,
--     weight = their weight, total = members, total_weight = weight of all
--     members (failed ones too)}; a tie goes to the answer given first.
--   by = "count" (default) or "weight" chooses what wins.
local json = require "chorus.json"

local M = {}

function M.tally(results, opts, by)
  opts = opts or {}
  local weight, count, first, order, total_w = {}, {}, {}, {}, 0
  for _, r in ipairs(results) do
    local w = r.weight or 1
    total_w = total_w + w
    if r.ok then
      local v = r.output
      if opts.key and type(v) == "table" then v = v[opts.key] end
      local k = json.canonical(v) or tostring(v)
      if not count[k] then
        weight[k], count[k], first[k] = 0, 0, r.output
        order[#order + 1] = k
      end
      weight[k] = weight[k] + w
      count[k] = count[k] + 1
    end
  end
  if #order == 0 then return nil, "no member answered" end
  local score = by == "weight" and weight or count
  local best = order[1]
  for _, k in ipairs(order) do
    if score[k] > score[best] then best = k end
  end
  return { winner = first[best], count = count[best], weight = weight[best], total = #results,
    total_weight = total_w }
end

return M
