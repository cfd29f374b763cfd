-- weather: an agent over HTTP, written against the scripting API only.
-- It asks params.url (default $WEATHER_URL) for the city in its input,
-- with a bearer token from the environment, and returns the JSON answer's
-- fields it needs. The step's timeout and cancel abort the request.
local http = require "chorus.http"
local template = require "chorus.template"

return {
  name = "weather",
  version = "1.0.0",
  description = "Current weather for {{city}} from a JSON HTTP service.",
  schema = { fields = {
    url = { type = "string", description = "the service's URL; {{city}} is filled from the input" },
    token_env = { type = "string", default = "WEATHER_TOKEN", description = "env var holding the bearer token" },
  } },
  call = function(input, ctx)
    local url, err = template.render(ctx.params.url or os.getenv("WEATHER_URL") or "", input, "params.url")
    if not url then return nil, err, { retry = false } end
    if url == "" then return nil, "no service URL: set params.url or WEATHER_URL", { retry = false } end
    local headers = { accept = "application/json", traceparent = ctx:traceparent() }
    local token = os.getenv(ctx.params.token_env or "WEATHER_TOKEN")
    if token then headers.authorization = "Bearer " .. token end
    local res, herr = http.get(url, { headers = headers, timeout_ms = 5000 })
    if not res then return nil, "weather: " .. herr end
    if res.status == 429 or res.status >= 500 then
      return nil, ("weather: HTTP %d"):format(res.status), { retry_after_ms = (tonumber(res.headers["retry-after"]) or 1) * 1000 }
    end
    if res.status ~= 200 then return nil, ("weather: HTTP %d"):format(res.status), { retry = false } end
    local body = require("chorus.json").decode(res.body)
    if type(body) ~= "table" then return nil, "weather: the answer is not JSON" end
    return { city = input.city, temperature_c = body.temperature_c, sky = body.sky }
  end,
}
