-- chorus events [TRACE]: a server's events as they happen, like tail -f.
-- With TRACE: that execution's past events, then live ones, then its
-- summary; the command ends with the execution (exit 0 completed, 1
-- failed or cancelled). Without: every event of every execution (admins)
-- until Ctrl-C (exit 0, with TRACE too).
--
-- The events come as server-sent events from the same endpoints as the
-- WebSocket ones (/ws/executions/{trace_id}, /ws/events, with Accept:
-- text/event-stream): the runtime's Lua has no raw TCP client to speak
-- WebSocket over, and libcurl (which it has) speaks plain HTTP through
-- proxies and TLS. A stream that breaks (the server restarted) is opened
-- again; events already shown (by their seq) are not shown twice.
local args = require "chorus.cli.args"
local target = require "chorus.cli.target"
local remote = require "chorus.cli.remote"
local render = require "chorus.cli.render"
local progress = require "chorus.cli.progress"
local json = require "chorus.json"
local native = require "chorus.native"
local sched = require "chorus.sched"

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local RETRY_MS = { 500, 1000, 2000, 5000 } -- waits between attempts to reopen a broken stream

local function say(msg) io.stderr:write("chorus events: " .. msg .. "\n") end

-- stamp(e) -> "2026-01-02T03:04:05.678Z", the event's time as the API
-- gives it (and the trace's first 8 characters when following every
-- execution)
local function stamper(all)
  return function(e)
    local t = type(e.at) == "string" and e.at or require("chorus.rfc3339").format(tonumber(e.at) or native.time())
    if all then t = t .. " " .. tostring(e.trace_id or "-"):sub(1, 8) end
    return t
  end
end

local function follow(opts, pos, bad)
  local trace = pos[1]
  if trace and not trace:match(UUID) then return bad(("TRACE must be a trace id (a UUID), got '%s'"):format(trace)) end
  local t, terr = target.resolve(opts, { what = "events" })
  if not t then return bad(terr) end
  local r = t.remote
  local path = trace and ("/ws/executions/" .. remote.escape(trace:lower())) or "/ws/events"
  local view = not opts.json and progress.new(io.stdout, { fd = 1, stamp = stamper(trace == nil) }) or nil
  local seen = {} -- trace -> the last seq shown
  local code, stopping, follower
  -- Ctrl-C (or SIGTERM) stops following at once, wherever the follower
  -- waits (cancelling its task aborts a transfer or a sleep).
  local hooks = {}
  for _, sig in ipairs({ "SIGINT", "SIGTERM" }) do
    hooks[#hooks + 1] = native.on_signal(sig, function()
      stopping = true
      if follower then follower:cancel() end
    end)
  end

  -- on_message(data) -> nil (go on) | exit code (the stream is done)
  local function on_message(data)
    local m = json.decode(data)
    if type(m) ~= "table" then return nil end
    if m.type == "result" then
      local rec = render.denull(m.execution) or {}
      if opts.json then
        io.stdout:write(data, "\n")
      else
        io.stdout:write("\n")
        view.summary(rec, { full = true })
      end
      return rec.status == "completed" and 0 or 1
    end
    if m.type == "error" then
      local e = type(m.error) == "table" and m.error or {}
      if e.code == "slow_consumer" then
        say("the server dropped this stream (it was read too slowly); opening it again")
        return nil
      end
      say(("the server ended the stream: %s"):format(tostring(e.message or e.code)))
      return 1
    end
    local tid, seq = m.trace_id, tonumber(m.seq)
    if tid and seq then
      if seq <= (seen[tid] or -1) then return nil end
      seen[tid] = seq
    end
    if opts.json then io.stdout:write(data, "\n") else view.on_event(render.denull(m)) end
    io.stdout:flush()
    return nil
  end

  -- follow_loop: opens the stream, prints what comes, opens it again
  -- when it breaks; sets code when the stream is done.
  local function follow_loop()
    local attempt = 0
    while not stopping and not code do
      local s, err, ecode = r:open_events(path)
      if stopping then return end
      if not s then
        -- The first attempt's failure is the answer (no such execution,
        -- a bad key, no server); later ones are a restart in progress.
        if attempt == 0 or ecode ~= "unreachable" then say(err) code = 1 return end
        attempt = attempt + 1
        sched.sleep(RETRY_MS[math.min(attempt, #RETRY_MS)])
      else
        if attempt > 0 then
          say(trace and "following again" or "following again (events while the stream was down are not shown)")
        end
        attempt = 1
        local parser = require("chorus.http.sse").new()
        local why
        while not code do
          local chunk, rerr = s:read()
          if not chunk then why = rerr or "the server ended the stream" break end
          parser:feed(chunk, function(_, data) code = code or on_message(data) end)
        end
        s:close()
        if stopping then return end
        if not code then
          say(("the stream broke (%s); opening it again"):format(tostring(why)))
          sched.sleep(RETRY_MS[1])
        end
      end
    end
  end
  follower = sched.spawn(follow_loop)
  local ok, ferr = follower:join()
  if not ok and not stopping then
    say("stopped: " .. tostring(ferr))
    code = 1
  end
  for _, h in ipairs(hooks) do h:close() end
  io.stdout:flush()
  return code or 0
end

return args.command({
  name = "events", args = "[TRACE] [options]", min = 0, max = 1, run = follow,
  about = "Follow a server's events as they happen: with TRACE, that execution's (its history first, its\n"
    .. "summary at the end); without, every execution's (admins) until Ctrl-C.",
  spec = { server = target.SERVER, json = { type = "flag", help = "print each message as one line of JSON" } },
  order = { "json", "server" },
  footer = target.SERVER_FOOTER,
  exit_codes = "exit codes: 0 when the execution (TRACE) completed, or when stopped with Ctrl-C; 1 when it failed\n"
    .. "or was cancelled, or the events could not be followed; 2 bad usage",
})
