-- fail: always fails with params.message.
return {
  name = "fail",
  version = "1.0.0",
  description = "Always fail with params.message.",
  schema = { fields = { message = { type = "string", default = "failed on purpose" } } },
  call = function(_, ctx)
    return nil, ctx.params.message or "failed on purpose"
  end,
}
