-- tests/fuzz/fuzz_record.lua: the Lua half of the fuzz_record target: the
-- record encoder and the checks in front of it (chorus.engine.limits).
--
-- An input is a JSON document, or else bytes read as a small value
-- grammar (so strings with NUL or malformed UTF-8, non-finite numbers,
-- deep nesting, tables shared by reference and cycles all occur). The
-- value is then:
--   1. checked by limits.check: it must not raise; a value it accepts
--      (repaired) must encode as JSON, the text valid UTF-8 and decoding
--      again, and not larger than the size it was measured at allows
--      (escapes take at most 6 bytes a byte); a size its Lua fast path
--      gives is the C walk's (native.value_check);
--   2. encoded by json.encode_lenient (what answers use for records
--      stored before the limits): never raises, always JSON that decodes;
--   3. the output of a step of a real execution (in memory): the
--      execution ends, and its record encodes — the step either completed
--      with the value, repaired, or failed saying which limit it broke;
--   4. read as a streamed chat completion chunk (native.chat_chunk): when
--      the fast path answers, a whole decode says the same
--      (chorus.llm.stream.fields), and carries no error or usage.
local json = require "chorus.json"
local limits = require "chorus.engine.limits"
local native = require "chorus.native"
local engine_mod = require "chorus.engine"
local log = require "chorus.log"
local fuzz_mutate = require "fuzz_mutate"
local stream = require "chorus.llm.stream"

local M = {}

local engine, cfg
local MAX = 64 * 1024 -- small limits: the fuzzer reaches them

-- The agent the execution runs returns the value under test.
local current = { value = nil }
package.loaded["fuzz_record_value"] = current

function M.setup()
  log.set_level("off")
  local dir = os.tmpname()
  os.remove(dir)
  if os.execute("mkdir -p " .. dir .. "/agents") ~= 0 then return nil, "cannot make " .. dir end
  local f = io.open(dir .. "/agents/fuzz_value.lua", "wb")
  f:write('return { name = "fuzz_value", call = function() return require("fuzz_record_value").value end }')
  f:close()
  local err
  engine, err = engine_mod.new({ scripts = { dir } })
  if not engine then return nil, err end
  local errs
  cfg, errs = engine:validate({ name = "fuzz", strategy = "sequential",
    steps = { { id = "v", agent = "fuzz_value" }, { id = "e", agent = "echo", dependencies = { "v" } } },
    settings = { max_output_bytes = MAX, max_execution_bytes = 4 * MAX } })
  if not cfg then return nil, errs[1].message end
  return true
end

-- value(bytes) -> a Lua value built from the bytes (see the header).
local function value_from(bytes)
  local pos, built = 1, {}
  local function byte()
    local b = bytes:byte(pos)
    pos = pos + 1
    return b or 0
  end
  local function read(depth)
    if pos > #bytes then return "end" end
    local op = byte() % 10
    if op <= 2 then
      local n = byte() % 24
      local s = bytes:sub(pos, pos + n - 1)
      pos = pos + n
      return s
    elseif op == 3 then
      local b = byte()
      if b == 0 then return 0 / 0 end
      if b == 1 then return math.huge end
      return (b - 128) * 1.5 ^ (byte() % 60)
    elseif op == 4 or op == 5 then
      local t = op == 4 and json.array() or {}
      built[#built + 1] = t
      if depth < 300 then
        for i = 1, byte() % 6 do
          local v = read(depth + 1)
          if op == 4 then t[i] = v else t[read(depth + 1)] = v end
        end
      end
      return t
    elseif op == 6 then -- a table made before: shared, maybe a cycle
      if #built == 0 then return json.null end
      return built[byte() % #built + 1]
    elseif op == 7 then
      return byte() % 2 == 0
    elseif op == 8 then
      return json.null
    end
    return depth
  end
  local ok, v = pcall(read, 0)
  if not ok then return nil end
  return v
end

local function check_text(s, what)
  if type(s) ~= "string" then return what .. ": not a string" end
  if not native.utf8_valid(s) then return what .. ": not valid UTF-8" end
  if json.decode(s) == nil then return what .. ": does not decode as JSON" end
end

-- 4: the fast path's fields against a whole decode's.
local function check_chat_chunk(data)
  local fast, content, finish, model = native.chat_chunk(data)
  if not fast then return nil end
  local ev = json.decode(data)
  if type(ev) ~= "table" then return "chat_chunk answered for a text that does not decode to a table" end
  local c, f, m, usage, err = stream.fields(ev)
  if err ~= nil or usage ~= nil or (ev.usage ~= nil and ev.usage ~= json.null) then
    return "chat_chunk answered for a chunk with an error or usage"
  end
  if c ~= content or f ~= finish or m ~= model then
    return ("chat_chunk read %q %q %q, a whole decode %q %q %q"):format(tostring(content), tostring(finish),
      tostring(model), tostring(c), tostring(f), tostring(m))
  end
end

function M.one(data)
  local chat_bad = check_chat_chunk(data)
  if chat_bad then return nil, chat_bad end
  local v = json.decode(data)
  if v == nil then v = value_from(data) end
  if v == nil then v = json.null end
  -- 1. the limits
  local ok, got, bytes, why = pcall(limits.check, v, MAX)
  if not ok then return nil, "limits.check raised: " .. tostring(got) end
  local sok, small = pcall(limits._small_bytes, v, 0, 0, 4095)
  if not sok then return nil, "limits' fast path raised: " .. tostring(small) end
  if small and small ~= native.value_check(v, MAX, limits.MAX_DEPTH) then
    return nil, ("limits' fast path sized %d bytes, the C walk %s"):format(small,
      tostring(native.value_check(v, MAX, limits.MAX_DEPTH)))
  end
  if got ~= nil then
    local text, err = json.encode(got)
    if not text then return nil, "limits.check accepted a value json cannot encode: " .. tostring(err) end
    local bad = check_text(text, "an accepted value's JSON")
    if bad then return nil, bad end
    if #text > 6 * bytes + 64 then
      return nil, ("measured at %d bytes, encodes to %d"):format(bytes, #text)
    end
  elseif type(bytes) ~= "string" or type(why) ~= "string" then
    return nil, "limits.check refused without a kind and a message"
  end
  -- 2. the lenient encoder
  local lok, text = pcall(json.encode_lenient, { items = json.array({ { value = v } }) })
  if not lok then return nil, "encode_lenient raised: " .. tostring(text) end
  local bad = check_text(text, "encode_lenient's output")
  if bad then return nil, bad end
  -- 3. an execution whose step returns it
  current.value = v
  local exec = engine:execute(cfg, {})
  local done = exec:wait()
  current.value = nil
  if not done then return nil, "the execution did not end" end
  local rec = exec:record()
  local rtext, rerr = json.encode(rec)
  if not rtext then return nil, "the record does not encode: " .. tostring(rerr) end
  bad = check_text(rtext, "the record's JSON")
  if bad then return nil, bad end
  local sr = exec:run_of("v")
  if sr.status == "failed" and not (sr.error or ""):match("^output ") and sr.error ~= "agent returned no output" then
    return nil, "the step failed for another reason: " .. tostring(sr.error)
  end
  return true
end

M.mutate = fuzz_mutate.mutate

return M
