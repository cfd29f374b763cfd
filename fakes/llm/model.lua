-- fakes/llm/model.lua: the deterministic "model" behind fakes/llm.lua. It
-- answers from what the prompt carries, so specs and the demo get answers
-- that depend on their input:
--   - error lines of a job log in the prompt (ABEND, ERROR, FAILED, RC=8,
--     EQQ...E / AWS...E message ids, SQLnnnnN, exceptions) are quoted with
--     their line numbers;
--   - knowledge-base passages ("[1] text" lines) are summarised, one
--     sentence each, with their reference;
--   - anything else gets a one-line reply quoting the question.
-- Asked for JSON, it answers an object: the keys of a JSON example found
-- in the prompt (filled by their names: findings, causes, recommendations,
-- sources, summary...), or {summary, findings, sources}.
-- Usage is counted from the text: a token is 4 bytes, rounded up (what
-- the llm agent estimates when a server sends no usage).
local json = require "chorus.json"

local M = {}

local ceil, min = math.ceil, math.min

function M.tokens(text)
  if text == nil or text == "" then return 0 end
  return ceil(#text / 4)
end

local ERROR_PATTERNS = {
  "ABEND", "ERROR", "FAILED", "FATAL", "[Ee]xception", "RC=%s*[1-9]",
  "%f[%w]EQQ%w-E%f[^%w]", "%f[%w]AWS%w-E%f[^%w]", "%f[%w]SQL%d+N%f[^%w]",
}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Message ids and exceptions say more than ABEND or a return code: they
-- come first.
local SPECIFIC = { "%f[%w]EQQ%w-E%f[^%w]", "%f[%w]AWS%w-E%f[^%w]", "%f[%w]SQL%d+N%f[^%w]", "[Ee]xception" }

-- The message a line carries, without what the shipped handlers wrap
-- quoted lines in (list marks, "line N:", a summary's lead, a
-- diagnosis' likelihood and evidence) and without a log's timestamp:
-- the same error quoted by several steps reads as one.
local function clean(l)
  l = trim(l)
  repeat
    local before = l
    l = l:gsub("^[%-%*]%s+", ""):gsub("^%d+%.%s+", ""):gsub("^line %d+:%s*", "")
      :gsub("^%d+ error line%(s%); the first:%s*", ""):gsub("^investigate and fix:%s*", "")
      :gsub("^%[%d%d:%d%d:%d%d%]%s*", "")
  until l == before
  l = l:gsub("%s+%(%a+%); evidence: .*$", ""):gsub("%s+%(line %d+%)$", ""):gsub("%s+", " ")
  return l
end

local function message_key(l)
  return clean(l):sub(1, 80)
end

local function specific(l)
  for _, p in ipairs(SPECIFIC) do
    if l:find(p) then return true end
  end
  return false
end

-- error_lines(text) -> {{line = n, text = "..."}...}; n counts the lines
-- of the text (a log pasted in a prompt keeps its own order). When the
-- text numbers its lines ("12: ..."), as a prompt quoting a log does,
-- only those are read, by their own numbers. The same message twice is
-- one; message ids and exceptions come before the rest.
function M.error_lines(text)
  local first, rest, seen, n = {}, {}, {}, 0
  local numbered = text:find("\n%d+: ") ~= nil
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local num, body = l:match("^(%d+): (.*)$")
    if numbered and not num then
      body = nil
    elseif not numbered then
      num, body = n, l
    end
    -- a knowledge-base passage ("[1] ...") is not an error of this job
    if body and not body:find("^%s*%[%w+%]%s") then
      for _, p in ipairs(ERROR_PATTERNS) do
        if body:find(p) then
          local key = message_key(body)
          if not seen[key] then
            seen[key] = true
            local list = specific(body) and first or rest
            list[#list + 1] = { line = tonumber(num), text = clean(body) }
          end
          break
        end
      end
    end
  end
  for _, e in ipairs(rest) do first[#first + 1] = e end
  return first
end

-- passages(text) -> {{ref = "1", text = "..."}...} from "[1] ..." lines
function M.passages(text)
  local out = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    local ref, body = l:match("^%s*%[(%w+)%]%s*(.+)$")
    if ref then out[#out + 1] = { ref = ref, text = trim(body) } end
  end
  return out
end

-- The first sentence of at least 40 bytes (a list's "1." is not one),
-- without markdown's emphasis marks.
local function first_sentence(s)
  s = s:gsub("%*%*", ""):gsub("`", "")
  local stop = s:find("[%.!?]%s", 40) or s:find("[%.!?]$", 40)
  local sentence = stop and s:sub(1, stop) or s
  if #sentence > 160 then sentence = sentence:sub(1, 157) .. "..." end
  return sentence
end

local function one_line(s, n)
  s = trim(s:gsub("%s+", " "))
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

-- The prompt as the model reads it: system and user texts.
local function texts(messages)
  local system, user, last_user = {}, {}, ""
  for _, m in ipairs(messages) do
    local content = m.content
    if type(content) == "table" then -- [{type = "text", text = ...}]
      local parts = {}
      for _, p in ipairs(content) do
        if type(p) == "table" and type(p.text) == "string" then parts[#parts + 1] = p.text end
      end
      content = table.concat(parts, "\n")
    end
    if type(content) == "string" then
      if m.role == "system" or m.role == "developer" then
        system[#system + 1] = content
      elseif m.role == "user" then
        user[#user + 1] = content
        last_user = content
      end
    end
  end
  return table.concat(system, "\n"), table.concat(user, "\n"), last_user
end

function M.prompt_tokens(messages)
  local n = 0
  for _, m in ipairs(messages) do
    n = n + 4 -- the role and framing, as the real ones count
    if type(m.content) == "string" then n = n + M.tokens(m.content) end
    if type(m.content) == "table" then
      for _, p in ipairs(m.content) do
        if type(p) == "table" and type(p.text) == "string" then n = n + M.tokens(p.text) end
      end
    end
  end
  return n
end

local function recommendations(errors)
  local out = {}
  for i, e in ipairs(errors) do
    out[#out + 1] = { rank = i, action = "investigate and fix: " .. one_line(e.text, 120),
      evidence = "line " .. e.line }
  end
  if #out == 0 then out[1] = { rank = 1, action = "no error found: check the job's status and rerun it", evidence = "none" } end
  out[#out + 1] = { rank = #out + 1, action = "rerun the job once the cause is fixed", evidence = "" }
  return out
end

local function summary(errors, passages, last_user)
  if #errors > 0 then
    return ("%s (line %d)"):format(one_line(errors[1].text, 160), errors[1].line)
  end
  if #passages > 0 then
    return ("%d passage(s); [%s] %s"):format(#passages, passages[1].ref, first_sentence(passages[1].text))
  end
  return "no errors found in: " .. one_line(last_user, 120)
end

local function sources(passages)
  local out = {}
  for _, p in ipairs(passages) do out[#out + 1] = { ref = p.ref, summary = first_sentence(p.text) } end
  return out
end

-- The first JSON object written in the prompt whose keys name what to
-- return ('Answer as {"causes": [], "recommendations": []}').
local function template(text)
  local start = 1
  while true do
    local s = text:find("{", start, true)
    if not s then return nil end
    local depth, i = 0, s
    while i <= #text do
      local c = text:sub(i, i)
      if c == "{" then depth = depth + 1 elseif c == "}" then
        depth = depth - 1
        if depth == 0 then break end
      end
      i = i + 1
    end
    local v = json.decode(text:sub(s, i))
    if type(v) == "table" and not json.is_array(v) and next(v) ~= nil then return v end
    start = s + 1
  end
end

local function fill(tpl, errors, passages, last_user)
  local out = {}
  for key, example in pairs(tpl) do
    local k = key:lower()
    if type(example) == "table" then
      if k:find("recommend") or k:find("action") or k:find("fix") or k:find("step") then
        out[key] = recommendations(errors)
      elseif k:find("source") or k:find("passage") or k:find("doc") or k:find("reference") then
        out[key] = sources(passages)
      elseif k:find("cause") then
        local causes = {}
        for i, e in ipairs(errors) do
          causes[#causes + 1] = { cause = one_line(e.text, 160), likelihood = i == 1 and "high" or "medium", line = e.line }
        end
        out[key] = json.array(causes)
      else
        local f = {}
        for _, e in ipairs(errors) do f[#f + 1] = { line = e.line, text = e.text } end
        out[key] = json.array(f)
      end
    elseif type(example) == "number" then
      out[key] = #errors
    elseif type(example) == "boolean" then
      out[key] = #errors > 0
    else
      out[key] = summary(errors, passages, last_user)
    end
  end
  return out
end

-- answer(messages, {json = bool}) -> text
function M.answer(messages, opts)
  local system, user, last_user = texts(messages)
  local errors, passages = M.error_lines(user), M.passages(user)
  if opts and opts.json then
    local tpl = template(system .. "\n" .. user)
    local value
    if tpl then
      value = fill(tpl, errors, passages, last_user)
    else
      local f = {}
      for _, e in ipairs(errors) do f[#f + 1] = { line = e.line, text = e.text } end
      value = { summary = summary(errors, passages, last_user), findings = json.array(f),
        sources = json.array(sources(passages)) }
    end
    return json.encode(value)
  end
  -- Prose: what happened (a job's line, as the handlers write it), the
  -- cause, the other errors, what the passages say and what to do.
  local lines = {}
  local job = user:match("\n(job [^\n]+)") or user:match("^(job [^\n]+)")
  if job then lines[#lines + 1] = "What happened: " .. one_line(job, 240) .. "." end
  if #errors > 0 then
    lines[#lines + 1] = ("Most likely cause: %s (line %d)."):format(one_line(errors[1].text, 200), errors[1].line)
    if #errors > 1 then
      lines[#lines + 1] = "Other error lines:"
      for i = 2, min(#errors, 10) do
        lines[#lines + 1] = ("- line %d: %s"):format(errors[i].line, one_line(errors[i].text, 200))
      end
    end
  end
  if #passages > 0 then
    lines[#lines + 1] = "What to do, from the knowledge base:"
    for i, p in ipairs(passages) do
      lines[#lines + 1] = ("%d. %s [%s]"):format(i, first_sentence(p.text), p.ref)
    end
  elseif #errors > 0 then
    lines[#lines + 1] = "What to do: fix the cause above, then rerun the job."
  end
  if #lines == 0 then
    lines[1] = "You asked: " .. one_line(last_user, 200)
  end
  return table.concat(lines, "\n")
end

-- embedding(text, dims) -> unit vector: words hashed into dims buckets
-- with a sign (texts sharing words point the same way), then normalised.
function M.embedding(text, dims, hash)
  local v = {}
  for i = 1, dims do v[i] = 0 end
  for word in text:lower():gmatch("[%w_]+") do
    local h = hash(word)
    local idx = tonumber(h:sub(1, 8), 16) % dims + 1
    local sign = tonumber(h:sub(9, 9), 16) % 2 == 0 and 1 or -1
    v[idx] = v[idx] + sign
  end
  local norm = 0
  for i = 1, dims do norm = norm + v[i] * v[i] end
  norm = math.sqrt(norm)
  if norm == 0 then
    v[1] = 1
    return v
  end
  for i = 1, dims do v[i] = v[i] / norm end
  return v
end

return M
