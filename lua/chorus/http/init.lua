-- chorus.http: the outbound HTTP client of the scripting API — what a
-- script calls to reach another service (require "chorus.http"). The
-- functions are chorus.http.client's (see its header for every option and
-- error word); sse parses server-sent events from a streamed response.
--
--   http.request(opts) -> res | nil, err, kind    res: {status, headers, body}
--   http.get(url, opts), http.post_json(url, value, opts) (res.json)
--   http.open(opts) -> streamed response: res:read() -> chunk | nil, res:close()
--   http.sse.new() -> parser: parser:feed(chunk) -> events
-- Every wait is cancelled with the step (its timeout, its execution's
-- cancel): a request in flight is then aborted at once.
local client = require "chorus.http.client"

return {
  request = client.request,
  get = client.get,
  post_json = client.post_json,
  open = client.open,
  is_json = client.is_json,
  sse = require "chorus.http.sse",
}
