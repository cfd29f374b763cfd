-- flaky: fails the first params.fail_times attempts of a step, then
-- returns {attempt = n}. Attempts are counted per execution and step (the
-- executor passes the attempt number), so it is deterministic.
return {
  name = "flaky",
  version = "1.0.0",
  description = "Fail the first params.fail_times attempts, then succeed.",
  schema = { fields = {
    fail_times = { type = "integer", default = 1, min = 0, max = 1000 },
    message = { type = "string", default = "flaky failure" },
  } },
  call = function(_, ctx)
    local n = ctx.attempt
    if n <= (ctx.params.fail_times or 1) then
      return nil, ("%s (attempt %d)"):format(ctx.params.message or "flaky failure", n)
    end
    return { attempt = n }
  end,
}
