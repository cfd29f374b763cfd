-- chorus run's live view shows a streamed answer as it is written.
local progress = require "chorus.cli.progress"

describe("progress view: streamed answers", function()
  it("writes step.delta text under its step, and ends the line before the next event", function()
    local buf = {}
    local out = { write = function(_, s) buf[#buf + 1] = s end }
    local v = progress.new(out, { color = false })
    v.on_event({ type = "step.status", step_id = "ask", status = "running" })
    v.on_event({ type = "step.delta", step_id = "ask", attempt = 1, delta = "The job " })
    v.on_event({ type = "step.delta", step_id = "ask", attempt = 1, delta = "failed.\nRerun it." })
    v.on_event({ type = "step.status", step_id = "ask", status = "completed", latency_ms = 12, attempts = 1 })
    local text = table.concat(buf)
    assert.truthy(text:find("ask          answer:\n              | The job failed.\n              | Rerun it.\n", 1, true), text)
    assert.truthy(text:find("Rerun it.\n%[.-%]   ask +completed"), text)
  end)
end)
