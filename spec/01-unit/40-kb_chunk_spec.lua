-- chorus.kb.chunk: documents cut by heading, then by size.
local chunk = require "chorus.kb.chunk"
local native = require "chorus.native"

local function headings(chunks)
  local out = {}
  for i, c in ipairs(chunks) do out[i] = c.heading or false end
  return out
end

describe("kb chunking", function()
  it("follows ATX headings into heading paths; the first H1 is the title", function()
    local title, chunks = chunk.split([[
Preamble before any heading.

# Guide

Intro.

## Part one
One.

### Detail
Deep.

## Part two ##
Two.
]], { markdown = true, name = "dir/guide.md" })
    assert.equal("Guide", title)
    assert.same({ false, "Guide", "Guide > Part one", "Guide > Part one > Detail", "Guide > Part two" }, headings(chunks))
    assert.equal("Deep.", chunks[4].content)
  end)

  it("reads setext headings, skips front matter, and keeps fenced code whole", function()
    local title, chunks = chunk.split([[
---
title: 'From front matter'
---
Top
===

text

Sub
---
```sh
# a comment, not a heading
echo hi
```
]], { markdown = true })
    assert.equal("From front matter", title)
    assert.same({ "Top", "Top > Sub" }, headings(chunks))
    assert.equal("```sh\n# a comment, not a heading\necho hi\n```", chunks[2].content)
  end)

  it("packs paragraphs up to max_chars and splits longer ones on lines, words, then characters", function()
    local para = ("word "):rep(30) -- 150 chars
    local text = "# T\n\n" .. para .. "\n\n" .. para .. "\n\n" .. ("x"):rep(250) .. "\n"
    local _, chunks = chunk.split(text, { markdown = true, max_chars = 200 })
    for _, c in ipairs(chunks) do assert.is_true(#c.content <= 200, #c.content) end
    assert.equal(para:gsub("%s+$", ""), chunks[1].content)
    -- the 250-character word is cut at 200
    assert.equal(("x"):rep(200), chunks[3].content)
    assert.equal(("x"):rep(50), chunks[4].content)
  end)

  it("never cuts a UTF-8 character in two", function()
    local text = ("é"):rep(300) -- 600 bytes, no spaces
    local _, chunks = chunk.split(text, { markdown = false, max_chars = 101 })
    for _, c in ipairs(chunks) do assert.is_true(native.utf8_valid(c.content)) end
    local joined = {}
    for i, c in ipairs(chunks) do joined[i] = c.content end
    assert.equal(text, table.concat(joined))
  end)

  it("plain text: paragraphs, no headings, title from the file name", function()
    local title, chunks = chunk.split("First para\nline two\r\n\r\nSecond para\n", { name = "notes/read-me.txt" })
    assert.equal("read-me", title)
    assert.same({ false }, headings(chunks))
    assert.equal("First para\nline two\n\nSecond para", chunks[1].content)
  end)

  it("the signature changes with the chunk size", function()
    assert.not_equal(chunk.signature(1500), chunk.signature(200))
  end)
end)
