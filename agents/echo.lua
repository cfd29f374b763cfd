-- echo: returns params.output when given, else the step's input.
-- Deterministic; for demos, tests and benchmarks.
return {
  name = "echo",
  version = "1.0.0",
  description = "Return params.output, or the input unchanged.",
  schema = { fields = { output = { type = "any", description = "fixed output to return" } } },
  call = function(input, ctx)
    local out = ctx.params and ctx.params.output
    if out ~= nil then return out end
    return input
  end,
}
