-- chorus.template: {{placeholders}} filled from a step's input. A text is
-- split into parts once and the parts are kept (agents render the same
-- prompt for every execution), so a text rendered again, with another
-- input or after a failure, must come out as if it were the first time.
local json = require "chorus.json"
local template = require "chorus.template"

describe("chorus.template.render", function()
  it("fills placeholders with strings, numbers, booleans, null and tables as JSON", function()
    local input = { job = "JOB_1", n = 3, f = 1.5, ok = true, none = json.null,
      dep = { status = "ABEND", rc = 12 }, items = { { name = "a" }, { name = "b" } } }
    assert.equal("job JOB_1 n=3 f=1.5 ok=true none=null",
      template.render("job {{job}} n={{n}} f={{f}} ok={{ok}} none={{none}}", input))
    assert.equal("ABEND/12 b", template.render("{{ dep.status }}/{{dep.rc}} {{items[1].name}}", input))
    assert.same({ status = "ABEND", rc = 12 }, json.decode(template.render("{{dep}}", input)))
  end)

  it("renders one text with each input it is given", function()
    local text = "[{{a}}|{{b}}]"
    for i = 1, 50 do
      assert.equal(("[%d|x%d]"):format(i, i), template.render(text, { a = i, b = "x" .. i }))
    end
  end)

  -- Texts built anew for each call (a handler's own prompts) and long
  -- ones: the kept splits are bounded, every text still renders.
  it("renders many distinct texts and long ones", function()
    for i = 1, 12000 do
      assert.equal("n" .. i .. "=" .. i, template.render("n" .. i .. "={{v}}", { v = i }))
    end
    local long = string.rep("x", 40000) .. "{{v}}" .. string.rep("y", 40000)
    for _ = 1, 3 do
      local out = template.render(long, { v = "!" })
      assert.equal(80001, #out)
      assert.equal("x!y", out:sub(40000, 40002))
    end
  end)

  it("names the template and the placeholder a value is missing for, then renders again", function()
    local text = "hello {{who}} from {{dep_s1.status}}"
    local out, err = template.render(text, { who = "ops" }, "params.prompt")
    assert.is_nil(out)
    assert.equal("template params.prompt: no value for {{dep_s1.status}} in the step input", err)
    out, err = template.render(text, { who = "ops", dep_s1 = "x" })
    assert.is_nil(out)
    assert.equal("template: no value for {{dep_s1.status}} (dep_s1 is not an object or array)", err)
    assert.equal("hello ops from OK", template.render(text, { who = "ops", dep_s1 = { status = "OK" } }))
  end)

  it("leaves text without a whole placeholder as it is", function()
    for _, text in ipairs({ "", "plain", "{{ unclosed", "}} {{", "{ {a} }", "a {{b" }) do
      assert.equal(text, template.render(text, { a = 1, b = 2 }))
    end
    assert.equal(42, template.render(42, {}))
  end)

  it("keeps the text around adjacent placeholders, at either end", function()
    local input = { a = "A", b = "B" }
    assert.equal("AB", template.render("{{a}}{{b}}", input))
    assert.equal("<A>", template.render("<{{a}}>", input))
    -- A placeholder runs to the first "}}": "{{-{{b}}" names the path "-{{b".
    local out, err = template.render("{{a}}-{{-{{b}}", input)
    assert.is_nil(out)
    assert.equal('template: unexpected "-" at position 1 of path "-{{b"', err)
  end)
end)
