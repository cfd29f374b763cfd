-- median: for numeric answers (or the number under opts.key of each), the
-- median of the members that answered. Agreement: members within
-- opts.tolerance of it (default 0: exactly it); score = agreed / total.
return {
  name = "median",
  version = "1.0.0",
  description = "The median of numeric answers; agreed = members within tolerance of it.",
  schema = { fields = {
    key = { type = "string", description = "read this field of each answer" },
    tolerance = { type = "number", min = 0, default = 0, description = "how far from the median still agrees" },
  } },
  aggregate = function(results, opts)
    local values = {}
    for _, r in ipairs(results) do
      local v = r.ok and r.output
      if opts.key and type(v) == "table" then v = v[opts.key] end
      if type(v) == "number" then values[#values + 1] = v end
    end
    if #values == 0 then return nil, "no member answered with a number" end
    table.sort(values)
    local n = #values
    local median = n % 2 == 1 and values[(n + 1) / 2] or (values[n / 2] + values[n / 2 + 1]) / 2
    local agreed = 0
    for _, v in ipairs(values) do
      if math.abs(v - median) <= (opts.tolerance or 0) then agreed = agreed + 1 end
    end
    return median, { agreed = agreed, total = #results, score = agreed / #results }
  end,
}
