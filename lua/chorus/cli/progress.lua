-- chorus.cli.progress: the live terminal view of `chorus run`: one line per
-- step transition as it happens, the text of streamed answers as it is
-- written (step.delta), then a summary table. Writes to a file handle,
-- with colours only on a terminal and never when NO_COLOR is set
-- (https://no-color.org) or TERM is dumb.
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
M.COLORS, M.RESET = COLORS, RESET

-- use_color(fd) -> whether to colour what is written to fd (1 or 2).
function M.use_color(fd)
  local no = os.getenv("NO_COLOR")
  if no ~= nil and no ~= "" then return false end
  if os.getenv("TERM") == "dumb" then return false end
  return native.isatty(fd)
end

local function fmt_ms(ms)
  if type(ms) ~= "number" then return "-" end
  if ms >= 1000 then return ("%.2f s"):format(ms / 1000) end
  return ("%.1f ms"):format(ms)
end
M.fmt_ms = fmt_ms

-- new(out, {color = bool, fd = 1|2, stamp = fn(e) -> text}) -> view:
-- view.on_event(e) writes a line for it, view.summary(record) the table.
-- color defaults to use_color(fd) (fd default 2: progress is on stderr);
-- stamp to the time since the view was made.
function M.new(out, opts)
  opts = opts or {}
  local color = opts.color
  if color == nil then color = M.use_color(opts.fd or 2) end
  local view = { out = out, color = color, t0 = native.now(), names = {} }

  local function paint(status, text)
    if not color or not COLORS[status] then return text end
    return COLORS[status] .. text .. RESET
  end
  view.paint = paint

  -- The time (and, following many executions, which one) each line
  -- starts with.
  local stamp = opts.stamp or function() return ("[%9s]"):format(fmt_ms(native.now() - view.t0)) end

  -- A streamed answer is written on lines of its own under the step,
  -- "| "-prefixed; the open one is ended before anything else is written.
  local streaming -- trace and step id whose answer line is open, or nil
  local indent
  local function end_stream()
    if streaming then
      out:write("\n")
      streaming = nil
    end
  end

  function view.on_event(e)
    if e.type == "step.delta" then
      if type(e.delta) ~= "string" then return end
      local key = tostring(e.trace_id) .. "\0" .. tostring(e.step_id)
      if streaming ~= key then
        end_stream()
        local t = stamp(e)
        indent = (" "):rep(#t + 3) .. "| "
        out:write(("%s   %-12s %s\n%s"):format(t, e.step_id, paint("running", "answer:"), indent))
        streaming = key
      end
      out:write((e.delta:gsub("\r?\n", "\n" .. indent)))
      return
    end
    end_stream()
    local t = stamp(e)
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

  -- summary(rec, {full = bool}): the table of steps, then the error and
  -- the output: whole with full (a text as it is, a value as indented
  -- JSON), else its first OUTPUT_PREVIEW bytes as one line of JSON.
  function view.summary(rec, sopts)
    end_stream()
    local full = sopts and sopts.full
    local rows = { { "STEP", "NAME", "STATUS", "ATTEMPTS", "LATENCY", "AGENT", "VERSION" } }
    for _, s in ipairs(rec.steps or {}) do
      rows[#rows + 1] = { tostring(s.id), tostring(s.name or ""), tostring(s.status), tostring(s.attempts or 0),
        fmt_ms(s.latency_ms), tostring(s.agent or "-"), tostring(s.agent_version or "-") }
    end
    local widths = {}
    for _, r in ipairs(rows) do
      for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #c) end
    end
    local metrics = rec.metrics or {}
    out:write(("%s %s in %s  (trace %s)\n"):format(tostring(rec.config), paint(rec.status, tostring(rec.status)),
      fmt_ms(metrics.latency_ms), tostring(rec.trace_id)))
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
    if rec.output ~= nil and full then
      local text = type(rec.output) == "string" and rec.output or json.pretty(rec.output) or tostring(rec.output)
      out:write("output:\n", text, text:sub(-1) == "\n" and "" or "\n")
    elseif rec.output ~= nil then
      local text = json.encode(rec.output) or tostring(rec.output)
      if #text > OUTPUT_PREVIEW then text = text:sub(1, OUTPUT_PREVIEW) .. " ... (use --json for all of it)" end
      out:write(("output: %s\n"):format(text))
    end
    if rec.answered_by then out:write(("answered by: %s\n"):format(rec.answered_by)) end
    if type(metrics.tokens) == "number" and metrics.tokens > 0 then
      out:write(("tokens: %d  cost: %.4f\n"):format(metrics.tokens, tonumber(metrics.cost) or 0))
    end
  end

  return view
end

return M
