-- chorus.engine.states: the state machines of DESIGN.md, in one place.
--
-- Execution: pending -> running -> completed | failed | cancelled, with
-- running <-> paused, and running -> compensation -> failed. Pausing a
-- pending execution makes it paused at once; it runs when resumed.
-- Step run: pending -> running -> completed | failed | cancelled,
-- pending -> skipped, pending -> paused (awaiting approval) -> running |
-- failed | skipped | cancelled. "cancelled": stopped by its execution
-- (cancel, a sibling's abort, the execution's deadline) while it ran or
-- waited for approval; "skipped": it never started.
local M = {}

M.execution = {
  pending = { running = true, paused = true, cancelled = true, failed = true },
  running = { paused = true, completed = true, failed = true, cancelled = true, compensation = true },
  paused = { running = true, completed = true, failed = true, cancelled = true, compensation = true },
  compensation = { failed = true },
  completed = {}, failed = {}, cancelled = {},
}

M.step = {
  pending = { running = true, skipped = true, paused = true, failed = true },
  paused = { running = true, failed = true, skipped = true, cancelled = true },
  running = { completed = true, failed = true, cancelled = true },
  completed = {}, failed = {}, skipped = {}, cancelled = {},
}

-- Where each machine ends: an execution in one of these is over (its
-- events stop, its webhooks go out); a step run in one is settled.
M.execution_terminal = { completed = true, failed = true, cancelled = true }
M.step_terminal = { completed = true, failed = true, cancelled = true, skipped = true }

-- The execution statuses each control is accepted in (checked against a
-- stored record when the execution runs on another node or none yet):
-- pause holds a pending or running one (pausing a paused one is a no-op);
-- cancel also stops a compensation.
M.control = {
  pause = { pending = true, running = true, paused = true },
  resume = { paused = true },
  cancel = { pending = true, running = true, paused = true, compensation = true },
}

-- allowed(machine, from, to) -> boolean
function M.allowed(machine, from, to)
  local row = M[machine][from]
  return row ~= nil and row[to] == true
end

return M
