-- chorus.handler: the small pieces the shipped handlers (agents/*_handler.lua,
-- log_analyzer, synthesizer) share: they are Lua over the llm, tws and kb
-- adapters, and user agents written the same way may use these too.
--
--   merge(...) -> a new table with the fields of each table given, later
--                 ones winning (nil arguments are skipped)
--   usage(meta...) -> the metas of the calls an attempt made as one:
--                 tokens and cost summed, other fields (model,
--                 usage_estimated...) from the first that has them; nil
--                 when no call returned one
--   fail(name, ctx, msg [, info]) -> nil, "<name> (step <id>): msg", info;
--                 a cancel or a timeout stays as it is (the step says it)
--   cut(s, max_bytes) -> s within max_bytes, never splitting a UTF-8
--                 character, and whether it was cut
--   context(input, opts) -> text, sources: the step input as prompt
--                 sections, one per field (sorted), each within
--                 opts.max_bytes (default 6000). What the shipped agents
--                 return reads as text: a knowledge-base result as
--                 numbered passages ("[1] title: snippet", their
--                 references in sources), a job as one line, a job log as
--                 its tail, a log analysis or a diagnosis as lists; text
--                 as it is; anything else as JSON. opts.skip: names left out.
--   asked(input) -> the input's own question: input.question,
--                 input.message or input.query when one is a non-empty
--                 string (text, never a template), else nil
--   question(params, input, about_job, otherwise) -> text | nil, err:
--                 params.question (a template over the input), else
--                 asked(input), else about_job:format(input.job_name)
--                 when the input names a job, else otherwise
local json = require "chorus.json"
local template = require "chorus.template"

local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format
local byte, sub, concat, sort = string.byte, string.sub, table.concat, table.sort

local M = {}

function M.merge(...)
  local out = {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if type(t) == "table" then
      for k, v in pairs(t) do out[k] = v end
    end
  end
  return out
end

function M.usage(...)
  local out, tokens, cost, any = {}, 0, 0, false
  for i = 1, select("#", ...) do
    local m = select(i, ...)
    if type(m) == "table" then
      any = true
      for k, v in pairs(m) do
        if k == "tokens" or k == "cost" then
          local n = tonumber(v)
          if n and n > 0 then
            if k == "tokens" then tokens = tokens + n else cost = cost + n end
          end
        elseif out[k] == nil then
          out[k] = v
        end
      end
    end
  end
  if not any then return nil end
  out.tokens, out.cost = tokens, cost
  return out
end

function M.fail(name, ctx, msg, info)
  if msg == "cancelled" or msg == "timeout" then return nil, msg end
  return nil, format("%s (step %s): %s", name, tostring(ctx.step_id), tostring(msg)), info
end

function M.cut(s, max_bytes)
  if #s <= max_bytes then return s, false end
  local n = max_bytes
  -- back off continuation bytes (10xxxxxx), then the lead byte they follow
  while n > 0 do
    local b = byte(s, n + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    n = n - 1
  end
  return sub(s, 1, n), true
end

local function is_list(v)
  return type(v) == "table" and v ~= json.null and (next(v) == nil or json.is_array(v))
end

-- A kb agent's output: {query, results = [{title, snippet, document...}]}.
local function kb_passages(v, sources, max_bytes)
  local lines, used = {}, 0
  for _, r in ipairs(v.results) do
    if type(r) == "table" then
      local ref = #sources + 1
      -- the chunk's text (what the model needs), else the snippet without
      -- its highlight marks
      local body = type(r.text) == "string" and r.text
        or tostring(r.snippet ~= nil and r.snippet ~= json.null and r.snippet or ""):gsub("\194\171", ""):gsub("\194\187", "")
      body = body:gsub("%s+", " ")
      local line = format("[%d] %s: %s", ref, tostring(r.title or r.document or "passage"), body)
      if used + #line > max_bytes then break end
      used = used + #line + 1
      lines[#lines + 1] = line
      sources[ref] = { ref = ref, title = r.title or json.null, document = r.document or json.null,
        chunk_id = r.chunk_id or json.null, score = r.score or json.null }
    end
  end
  if #lines == 0 then return "(no passages found for: " .. tostring(v.query) .. ")" end
  return concat(lines, "\n")
end

local function str(v)
  if v == nil or v == json.null then return nil end
  return tostring(v)
end

-- A job in the plan (the tws agent's view): one line an operator reads.
local function job_line(j)
  local where = str(j.job_stream) and (str(j.job_stream) .. "." .. str(j.job_name)) or str(j.job_name)
  local parts = { format("job %s", where) }
  if str(j.workstation) then parts[#parts + 1] = "on " .. str(j.workstation) end
  parts[#parts + 1] = format(": %s", str(j.status) or "status unknown")
  if str(j.internal_status) then parts[#parts + 1] = format("(%s)", str(j.internal_status)) end
  if str(j.return_code) then parts[#parts + 1] = ", return code " .. str(j.return_code) end
  if str(j.start_time) then parts[#parts + 1] = ", started " .. str(j.start_time) end
  if str(j.end_time) then parts[#parts + 1] = ", ended " .. str(j.end_time) end
  return (concat(parts, " "):gsub(" :", ":"):gsub(" ,", ","))
end

local function list_lines(out, items, fmt)
  for i, it in ipairs(items) do
    if type(it) == "table" then out[#out + 1] = fmt(it, i) elseif it ~= json.null then out[#out + 1] = "- " .. tostring(it) end
  end
end

-- The shapes the shipped agents return, as text a model (or a person)
-- reads; nil for anything else.
local function known(v, sources, max_bytes)
  if is_list(v.results) and v.query ~= nil then return kb_passages(v, sources, max_bytes) end
  if type(v.text) == "string" and type(v.job) == "table" then -- a tws job log
    local text = v.text
    if #text > max_bytes then text = sub(text, #text - max_bytes + 1):gsub("^[\128-\191]+", "") end
    return format("log of %s (%s):\n%s", job_line(v.job), (v.truncated or #text < #v.text) and "its end" or "whole", text)
  end
  if str(v.job_name) and v.internal_status ~= nil then return job_line(v) end
  if type(v.summary) == "string" and is_list(v.findings) then -- a log analysis
    local out = { v.summary }
    list_lines(out, v.findings, function(f)
      local meaning = str(f.meaning)
      return format("- %s%s%s", str(f.line) and ("line " .. str(f.line) .. ": ") or "", str(f.text) or "",
        meaning and meaning ~= "" and (" (" .. meaning .. ")") or "")
    end)
    return concat(out, "\n")
  end
  if is_list(v.recommendations) then -- a diagnosis
    local out = { str(v.summary) or "" }
    if is_list(v.causes) and #v.causes > 0 then
      out[#out + 1] = "causes:"
      list_lines(out, v.causes, function(c)
        return format("- %s (%s)%s", str(c.cause) or "", str(c.likelihood) or "?",
          str(c.evidence) and str(c.evidence) ~= "" and ("; evidence: " .. str(c.evidence)) or "")
      end)
    end
    out[#out + 1] = "recommendations:"
    list_lines(out, v.recommendations, function(r, i)
      return format("%s. %s%s", str(r.rank) or i, str(r.action) or "",
        str(r.rationale) and str(r.rationale) ~= "" and (" (" .. str(r.rationale) .. ")") or "")
    end)
    return concat(out, "\n")
  end
  if type(v.message) == "string" and v.action ~= nil and v.after ~= nil then return v.message end -- a tws action
  return nil
end

local function section(v, sources, max_bytes)
  if type(v) == "string" then return (M.cut(v, max_bytes)) end
  if type(v) == "table" and v ~= json.null then
    local text = known(v, sources, max_bytes)
    if text then return (M.cut(text, max_bytes)) end
  end
  local s = json.encode_lenient(v)
  local cut, was = M.cut(s, max_bytes)
  return was and (cut .. " ...(cut)") or cut
end

function M.context(input, opts)
  opts = opts or {}
  local max_bytes, skip = opts.max_bytes or 6000, opts.skip or {}
  local keys = {}
  for k in pairs(input) do
    if type(k) == "string" and not skip[k] then keys[#keys + 1] = k end
  end
  sort(keys)
  local parts, sources = {}, json.array()
  for _, k in ipairs(keys) do
    parts[#parts + 1] = format("### %s\n%s", k, section(input[k], sources, max_bytes))
  end
  return concat(parts, "\n\n"), sources
end

function M.asked(input)
  for _, k in ipairs({ "question", "message", "query" }) do
    local v = input[k]
    if type(v) == "string" and v:find("%S") then return v end
  end
  return nil
end

function M.question(params, input, about_job, otherwise)
  if params.question then return template.render(params.question, input, "params.question") end
  local q = M.asked(input)
  if q then return q end
  if type(input.job_name) == "string" then return format(about_job, input.job_name) end
  return otherwise
end

return M
