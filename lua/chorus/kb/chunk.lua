-- chorus.kb.chunk: a document cut into the pieces the knowledge base
-- searches: by heading first (each chunk knows its heading path, which
-- search weighs above the text), then by size, on paragraph, line, word
-- and finally character (UTF-8) boundaries.
--
--   split(text, {markdown = bool, max_chars = 1500, name = "file.md"})
--     -> title, {{heading = "Title > Section" | nil, content = "..."}...}
--   signature(max_chars) -> "v1/1500": stored with each document; a
--     re-import re-cuts a file whose signature differs (bump VERSION
--     when the cut changes)
--
-- Markdown: ATX headings (# .. ######) and setext headings (a line under
-- === or ---), never inside ``` or ~~~ fences; a fenced block is one
-- paragraph; YAML front matter is skipped. Title: front matter's title,
-- else the first level-1 heading, else the file name without its
-- extension. Plain text: paragraphs, no headings.
local M = { VERSION = "1" }

local concat, sub, byte, match = table.concat, string.sub, string.byte, string.match

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Cuts at most n bytes off the front of s without splitting a UTF-8
-- character (continuation bytes are 10xxxxxx).
local function utf8_prefix(s, n)
  if #s <= n then return s end
  local i = n
  while i > 1 do
    local b = byte(s, i + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    i = i - 1
  end
  return sub(s, 1, i)
end

-- Splits one over-long piece: at the last whitespace before the limit
-- (if it is not too early), else at a character boundary.
local function split_long(s, max, out)
  while #s > max do
    local head = utf8_prefix(s, max)
    local cut = head:match("^.*()%s")
    if cut and cut > max / 2 then head = sub(s, 1, cut - 1) end
    out[#out + 1] = trim(head)
    s = trim(sub(s, #head + 1))
  end
  if s ~= "" then out[#out + 1] = s end
end

-- Paragraph-sized blocks of a section's lines (fences kept whole).
local function blocks(lines)
  local out, cur = {}, {}
  local fence
  local function flush()
    if #cur > 0 then
      local b = trim(concat(cur, "\n"))
      if b ~= "" then out[#out + 1] = b end
      cur = {}
    end
  end
  for _, line in ipairs(lines) do
    local f = match(line, "^%s*(```+)") or match(line, "^%s*(~~~+)")
    if fence then
      cur[#cur + 1] = line
      if f and sub(f, 1, 3) == sub(fence, 1, 3) and #f >= #fence then fence = nil flush() end
    elseif f then
      flush()
      fence = f
      cur[#cur + 1] = line
    elseif match(line, "^%s*$") then
      flush()
    else
      cur[#cur + 1] = line
    end
  end
  flush()
  return out
end

-- Packs blocks into chunks of at most max characters.
local function pack(bs, max, out, heading)
  local cur, len = {}, 0
  local function flush()
    if #cur > 0 then
      out[#out + 1] = { heading = heading, content = concat(cur, "\n\n") }
      cur, len = {}, 0
    end
  end
  for _, b in ipairs(bs) do
    if #b > max then
      flush()
      -- A big block: by lines, then by words.
      local pieces, acc, alen = {}, {}, 0
      for line in (b .. "\n"):gmatch("(.-)\n") do
        if alen > 0 and alen + 1 + #line > max then
          pieces[#pieces + 1] = concat(acc, "\n")
          acc, alen = {}, 0
        end
        if #line > max then
          if alen > 0 then pieces[#pieces + 1] = concat(acc, "\n") acc, alen = {}, 0 end
          split_long(line, max, pieces)
        else
          acc[#acc + 1] = line
          alen = alen + (alen > 0 and 1 or 0) + #line
        end
      end
      if alen > 0 then pieces[#pieces + 1] = concat(acc, "\n") end
      for _, p in ipairs(pieces) do
        p = trim(p)
        if p ~= "" then out[#out + 1] = { heading = heading, content = p } end
      end
    else
      if len > 0 and len + 2 + #b > max then flush() end
      cur[#cur + 1] = b
      len = len + (len > 0 and 2 or 0) + #b
    end
  end
  flush()
end

local function heading_of(line)
  local hashes, text = match(line, "^ ? ? ?(#+)%s+(.-)%s*$")
  if not hashes then
    hashes = match(line, "^ ? ? ?(#+)$")
    text = ""
  end
  if not hashes or #hashes > 6 then return nil end
  text = text:gsub("%s+#+$", "")
  return #hashes, trim(text)
end

-- split(text, opts) -> title, chunks
function M.split(text, opts)
  opts = opts or {}
  local max = opts.max_chars or 1500
  local name = opts.name or "document"
  local title = (name:match("([^/]+)$") or name):gsub("%.[^.]*$", "")
  local lines = {}
  for line in (text:gsub("\r\n", "\n") .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  local out = {}
  if not opts.markdown then
    pack(blocks(lines), max, out, nil)
    return title, out
  end
  local stack, section, fence, found_title = {}, {}, nil, false
  local i = 1
  -- YAML front matter: its title names the document; the rest is skipped.
  if lines[1] == "---" then
    for j = 2, #lines do
      if lines[j] == "---" or lines[j] == "..." then
        for k = 2, j - 1 do
          local t = match(lines[k], "^title:%s*(.-)%s*$")
          if t and t ~= "" then title, found_title = t:gsub("^[\"'](.*)[\"']$", "%1"), true end
        end
        i = j + 1
        break
      end
    end
  end
  local function path()
    local parts = {}
    for l = 1, 6 do if stack[l] then parts[#parts + 1] = stack[l] end end
    return #parts > 0 and concat(parts, " > ") or nil
  end
  local function close_section()
    pack(blocks(section), max, out, path())
    section = {}
  end
  local function open(level, text_)
    close_section()
    for l = level, 6 do stack[l] = nil end
    stack[level] = text_ ~= "" and text_ or nil
    if level == 1 and not found_title and text_ ~= "" then title, found_title = text_, true end
  end
  while i <= #lines do
    local line = lines[i]
    local f = match(line, "^%s*(```+)") or match(line, "^%s*(~~~+)")
    if fence then
      section[#section + 1] = line
      if f and sub(f, 1, 3) == sub(fence, 1, 3) and #f >= #fence then fence = nil end
    elseif f then
      fence = f
      section[#section + 1] = line
    else
      local level, htext = heading_of(line)
      local nxt = lines[i + 1]
      if level then
        open(level, htext)
      elseif nxt and not match(line, "^%s*$") and (match(nxt, "^ ? ? ?=+%s*$") or match(nxt, "^ ? ? ?%-%-+%s*$"))
        and not (section[#section] and not match(section[#section], "^%s*$")) then
        -- setext: a one-line paragraph underlined
        open(match(nxt, "=") and 1 or 2, trim(line))
        i = i + 1
      else
        section[#section + 1] = line
      end
    end
    i = i + 1
  end
  close_section()
  return title, out
end

-- The signature stored with a document: how it was cut.
function M.signature(max_chars)
  return ("v%s/%d"):format(M.VERSION, max_chars or 1500)
end

return M
