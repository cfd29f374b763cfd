-- chorus.engine.condition: the `when` expressions of steps — a small, safe
-- language over a step's input, parsed once (at validation) and never run
-- as Lua source.
--
--   expr    := or
--   or      := and ("or" and)*
--   and     := not ("and" not)*
--   not     := "not" not | cmp
--   cmp     := value (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") value)?
--   value   := string | number | true | false | null | path | list | "(" expr ")"
--   list    := "[" (value ("," value)*)? "]"
--   path    := name ("." name | "." digits | "[" digits "]")*   (chorus.template)
-- Strings are "double" or 'single' quoted (\" \' \\ \n \t escapes).
--
--   parse(text) -> ast | nil, err        err says where: "at 14: ..."
--   paths(ast) -> {path...}              every path it reads
--   eval(ast, input) -> boolean          a path that is absent is null;
--     comparisons of different types are false (== and != compare by
--     value, JSON-like: tables by canonical JSON); "x in list" is
--     membership, "s in string" a substring test; the result is truthy
--     as JSON reads it (false, null, absent are false)
local template = require "chorus.template"
local json = require "chorus.json"

local M = {}

local null = json.null

-- Tokenizer --------------------------------------------------------------

local function tokenize(text)
  local toks, pos, len = {}, 1, #text
  local function add(kind, value, at) toks[#toks + 1] = { kind = kind, value = value, at = at } end
  while pos <= len do
    local c = text:sub(pos, pos)
    if c:match("%s") then
      pos = pos + 1
    elseif c == '"' or c == "'" then
      local at, buf, i = pos, {}, pos + 1
      while true do
        local ch = text:sub(i, i)
        if ch == "" then return nil, ("at %d: unterminated string"):format(at) end
        if ch == c then break end
        if ch == "\\" then
          local e = text:sub(i + 1, i + 1)
          local map = { n = "\n", t = "\t", ["\\"] = "\\", ['"'] = '"', ["'"] = "'" }
          if not map[e] then return nil, ("at %d: unknown escape \\%s"):format(i, e) end
          buf[#buf + 1] = map[e]
          i = i + 2
        else
          buf[#buf + 1] = ch
          i = i + 1
        end
      end
      add("value", table.concat(buf), at)
      pos = i + 1
    elseif c:match("[%d%-]") and text:sub(pos):match("^%-?%d") then
      local num = text:match("^%-?%d+%.?%d*[eE]?[%+%-]?%d*", pos)
      local n = tonumber(num)
      if not n then return nil, ("at %d: bad number %q"):format(pos, num) end
      add("value", n, pos)
      pos = pos + #num
    elseif c:match("[%a_]") then
      -- a word or a path: names joined by dots and [n]
      local at = pos
      local path = text:match("^[%a_][%w_%-]*", pos)
      pos = pos + #path
      while true do
        local more = text:match("^%.[%a_][%w_%-]*", pos) or text:match("^%.%d+", pos)
          or text:match("^%[%d+%]", pos)
        if not more then break end
        path = path .. more
        pos = pos + #more
      end
      if path == "and" or path == "or" or path == "not" or path == "in" then
        add("op", path, at)
      elseif path == "true" then add("value", true, at)
      elseif path == "false" then add("value", false, at)
      elseif path == "null" then add("value", null, at)
      else
        local ok, err = template.parse_path(path)
        if not ok then return nil, ("at %d: %s"):format(at, err) end
        add("path", path, at)
      end
    else
      local two = text:sub(pos, pos + 1)
      if two == "==" or two == "!=" or two == "<=" or two == ">=" then
        add("op", two, pos)
        pos = pos + 2
      elseif c == "<" or c == ">" or c == "(" or c == ")" or c == "[" or c == "]" or c == "," then
        add(c:match("[<>]") and "op" or "punct", c, pos)
        pos = pos + 1
      else
        return nil, ("at %d: unexpected %q"):format(pos, c)
      end
    end
  end
  add("end", nil, len + 1)
  return toks
end

-- Parser -----------------------------------------------------------------

local MAX_DEPTH = 64

function M.parse(text)
  if type(text) ~= "string" or text:match("^%s*$") then return nil, "empty condition" end
  if #text > 2000 then return nil, "longer than 2000 characters" end
  local toks, err = tokenize(text)
  if not toks then return nil, err end
  local i, depth = 1, 0
  local function peek() return toks[i] end
  local function take() i = i + 1 return toks[i - 1] end
  local function fail(t, msg) error({ msg = ("at %d: %s"):format(t.at, msg) }, 0) end
  local expr
  local function value()
    local t = take()
    if t.kind == "value" then return { "lit", t.value } end
    if t.kind == "path" then return { "path", t.value } end
    if t.kind == "punct" and t.value == "(" then
      depth = depth + 1
      if depth > MAX_DEPTH then fail(t, "nested too deep") end
      local e = expr()
      local close = take()
      if close.value ~= ")" then fail(close, "expected ')'") end
      depth = depth - 1
      return e
    end
    if t.kind == "punct" and t.value == "[" then
      local items = {}
      if peek().value ~= "]" then
        repeat
          items[#items + 1] = value()
          local sep = peek()
          if sep.value == "," then take() end
        until sep.value ~= ","
      end
      local close = take()
      if close.value ~= "]" then fail(close, "expected ']' or ','") end
      return { "list", items }
    end
    fail(t, t.kind == "end" and "the condition ends too soon" or ("unexpected %q"):format(tostring(t.value)))
  end
  local CMP = { ["=="] = true, ["!="] = true, ["<"] = true, ["<="] = true, [">"] = true, [">="] = true, ["in"] = true }
  local function cmp()
    local left = value()
    local t = peek()
    if t.kind == "op" and CMP[t.value] then
      take()
      return { t.value, left, value() }
    end
    return left
  end
  local function neg()
    local t = peek()
    if t.kind == "op" and t.value == "not" then
      take()
      depth = depth + 1
      if depth > MAX_DEPTH then fail(t, "nested too deep") end
      local e = { "not", neg() }
      depth = depth - 1
      return e
    end
    return cmp()
  end
  local function conj()
    local e = neg()
    while peek().kind == "op" and peek().value == "and" do
      take()
      e = { "and", e, neg() }
    end
    return e
  end
  function expr()
    local e = conj()
    while peek().kind == "op" and peek().value == "or" do
      take()
      e = { "or", e, conj() }
    end
    return e
  end
  local ok, ast = pcall(function()
    local e = expr()
    local t = peek()
    if t.kind ~= "end" then fail(t, ("unexpected %q after the condition"):format(tostring(t.value))) end
    return e
  end)
  if not ok then
    if type(ast) == "table" then return nil, ast.msg end
    error(ast, 0)
  end
  return ast
end

-- paths(ast) -> list of paths read
function M.paths(ast, out)
  out = out or {}
  if type(ast) ~= "table" then return out end
  if ast[1] == "path" then
    out[#out + 1] = ast[2]
  elseif ast[1] == "list" then
    for _, x in ipairs(ast[2]) do M.paths(x, out) end
  elseif ast[1] ~= "lit" then
    for k = 2, #ast do M.paths(ast[k], out) end
  end
  return out
end

-- Evaluation -------------------------------------------------------------

local function val(ast, input)
  local op = ast[1]
  if op == "lit" then return ast[2] end
  if op == "path" then
    local v = template.lookup(input, ast[2])
    if v == nil then return null end
    return v
  end
  if op == "list" then
    local out = {}
    for k, x in ipairs(ast[2]) do out[k] = val(x, input) end
    return out
  end
  return M.eval(ast, input)
end

local function equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "table" and a ~= null then
    return json.canonical(a) == json.canonical(b)
  end
  return a == b
end

local function truthy(v)
  return v ~= nil and v ~= false and v ~= null
end

function M.eval(ast, input)
  local op = ast[1]
  if op == "and" then return M.eval(ast[2], input) and M.eval(ast[3], input) end
  if op == "or" then return M.eval(ast[2], input) or M.eval(ast[3], input) end
  if op == "not" then return not M.eval(ast[2], input) end
  if op == "lit" or op == "path" or op == "list" then return truthy(val(ast, input)) end
  local a, b = val(ast[2], input), val(ast[3], input)
  if op == "==" then return equal(a, b) end
  if op == "!=" then return not equal(a, b) end
  if op == "in" then
    if type(b) == "string" then return type(a) == "string" and b:find(a, 1, true) ~= nil end
    if type(b) ~= "table" or b == null then return false end
    for _, x in ipairs(b) do
      if equal(a, x) then return true end
    end
    return false
  end
  -- ordering: numbers with numbers, strings with strings
  if type(a) ~= type(b) or (type(a) ~= "number" and type(a) ~= "string") then return false end
  if op == "<" then return a < b end
  if op == "<=" then return a <= b end
  if op == ">" then return a > b end
  return a >= b
end

return M
