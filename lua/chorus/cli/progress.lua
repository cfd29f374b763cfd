-- chorus.cli.progress: the live terminal view of `chorus run`: one line per
-- step transition as it happens, the text of streamed answers as it is
-- written (step.delta), then a summary table. Writes to a file handle
-- (stderr), with colours only on a terminal.
local native = require "chorus.native"
local json = require "chorus.json"

-- How much of the output the summary shows; --json prints all of it.
local OUTPUT_PREVIEW = 600

local M = {}

local COLORS = {
  running = "\27[36m", completed = "\27[32m", failed = "\27[31m", skipped = "\27[90m",
  paused = "\27[33m", cancelled = "\27[31m", compensation = "\27[35m", retry = "\27[33m",
}
local RESET = "\27[0m"

local function fmt_ms(ms)
  if ms == nil then return "-" end
  if ms >= 1000 then return ("%.2f s"):format(ms / 1000) end
  return ("%.1f ms"):format(ms)
end

-- attach(exec_bus, out, opts) -> view; view:detach(); view:summary(record)
function M.new(out, opts)
  opts = opts or {}
  local color = opts.color
  if color == nil then color = native.isatty(2) end
  local view = { out = out, color = color, t0 = native.now(), names = {} }

  local function paint(status, text)
    if not color or not COLORS[status] then return text end
    return COLORS[status] .. text .. RESET
  end
  view.paint = paint

  -- A streamed answer is written on lines of its own under the step,
  -- "│ "-prefixed; the open one is ended before anything else is written.
  local streaming -- step id whose answer line is open, or nil
  local function end_stream()
    if streaming then
      out:write("\n")
      streaming = nil
    end
  end
  local INDENT = (" "):rep(14) .. "| "

  function view.on_event(e)
    if e.type == "step.delta" then
      if type(e.delta) ~= "string" then return end
      if streaming ~= e.step_id then
        end_stream()
        out:write(("%s   %-12s %s\n%s"):format(("[%9s]"):format(fmt_ms(native.now() - view.t0)), e.step_id,
          paint("running", "answer:"), INDENT))
        streaming = e.step_id
      end
      out:write((e.delta:gsub("\r?\n", "\n" .. INDENT)))
      return
    end
    end_stream()
    local t = ("[%9s]"):format(fmt_ms(native.now() - view.t0))
    if e.type == "execution.status" then
      out:write(("%s execution %s\n"):format(t, paint(e.status, e.status)))
    elseif e.type == "step.status" then
      local extra = ""
      if e.status == "completed" or e.status == "failed" then
        extra = ("  %s, attempt %d"):format(fmt_ms(e.latency_ms), e.attempts or 0)
        if e.error then extra = extra .. "  " .. paint("failed", tostring(e.error)) end
      elseif e.status == "paused" then
        extra = "  awaiting approval"
      end
      out:write(("%s   %-12s %s%s\n"):format(t, e.step_id, paint(e.status, ("%-10s"):format(e.status)), extra))
    elseif e.type == "step.retry" then
      out:write(("%s   %-12s %s  attempt %d failed: %s\n"):format(t, e.step_id,
        paint("retry", "retrying  "), e.attempts or 0, tostring(e.error)))
    elseif e.type == "step.compensated" then
      out:write(("%s   %-12s %s %s\n"):format(t, e.step_id, paint("compensation", "compensated"), e.status))
    end
  end

  function view.summary(rec)
    local rows = { { "STEP", "NAME", "STATUS", "ATTEMPTS", "LATENCY", "AGENT", "VERSION" } }
    for _, s in ipairs(rec.steps) do
      rows[#rows + 1] = { s.id, s.name or "", s.status, tostring(s.attempts), fmt_ms(s.latency_ms),
        s.agent, s.agent_version or "-" }
    end
    local widths = {}
    for _, r in ipairs(rows) do
      for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #c) end
    end
    out:write(("\n%s %s in %s  (trace %s)\n"):format(rec.config, paint(rec.status, rec.status),
      fmt_ms(rec.metrics.latency_ms), rec.trace_id))
    for ri, r in ipairs(rows) do
      local cells = {}
      for i, c in ipairs(r) do
        local cell = ("%-" .. widths[i] .. "s"):format(c)
        if ri > 1 and i == 3 then cell = paint(c, cell) end
        cells[i] = cell
      end
      out:write("  " .. table.concat(cells, "  "):gsub("%s+$", "") .. "\n")
    end
    if rec.error then out:write(("error: %s\n"):format(rec.error)) end
    if rec.output ~= nil then
      local text = json.encode(rec.output) or tostring(rec.output)
      if #text > OUTPUT_PREVIEW then text = text:sub(1, OUTPUT_PREVIEW) .. " ... (use --json for all of it)" end
      out:write(("output: %s\n"):format(text))
    end
    if rec.answered_by then out:write(("answered by: %s\n"):format(rec.answered_by)) end
    if rec.metrics.tokens and rec.metrics.tokens > 0 then
      out:write(("tokens: %d  cost: %.4f\n"):format(rec.metrics.tokens, rec.metrics.cost or 0))
    end
  end

  return view
end

return M
