-- chorus.store.memory: the embedded default store. Executions live in this
-- process only; finished ones are kept up to a bound (oldest dropped first)
-- so a long-running process does not grow without limit.
--
-- Store interface (the PostgreSQL store implements the same):
--   store:insert_execution(exec)      -> true | nil, err
--   store:update_execution(exec)      -> true | nil, err  (status & totals)
--   store:save_step(exec, step_run)   -> true | nil, err
--   store:get_execution(id_or_trace)  -> exec | nil
--   store:list_executions(filter)     -> array (newest first)
-- Writes return once the change is durable (here: at once).
local Store = {}
Store.__index = Store

local M = {}

-- new({max_finished = n}) keeps at most n finished executions (default 10000).
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    by_id = {}, by_trace = {},
    finished = {}, finished_head = 1, finished_tail = 0, -- a FIFO of finished ones
    max_finished = opts.max_finished or 10000,
  }, Store)
end

function Store:insert_execution(exec)
  self.by_id[exec.id] = exec
  self.by_trace[exec.trace_id] = exec
  return true
end

local TERMINAL = { completed = true, failed = true, cancelled = true }

function Store:update_execution(exec)
  if TERMINAL[exec.status] and not exec._stored_final then
    exec._stored_final = true
    local f = self.finished
    self.finished_tail = self.finished_tail + 1
    f[self.finished_tail] = exec
    -- Drop the oldest finished executions beyond the bound.
    while self.finished_tail - self.finished_head + 1 > self.max_finished do
      local old = f[self.finished_head]
      f[self.finished_head] = nil
      self.finished_head = self.finished_head + 1
      self.by_id[old.id] = nil
      self.by_trace[old.trace_id] = nil
    end
  end
  return true
end

function Store:save_step()
  return true
end

function Store:get_execution(key)
  return self.by_id[key] or self.by_trace[key]
end

-- list_executions({status = s, config = name, limit = n}) newest first.
function Store:list_executions(filter)
  filter = filter or {}
  local out = {}
  for _, e in pairs(self.by_id) do
    if (not filter.status or e.status == filter.status)
      and (not filter.config or e.config_name == filter.config) then
      out[#out + 1] = e
    end
  end
  table.sort(out, function(a, b) return (a.created_at or 0) > (b.created_at or 0) end)
  if filter.limit and #out > filter.limit then
    for i = #out, filter.limit + 1, -1 do out[i] = nil end
  end
  return out
end

return M
