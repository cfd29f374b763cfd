-- The in-memory store against the store contract, plus its bound and its
-- archive (ended executions beyond the recent ones kept serialized in a
-- native ring, outside the Lua heap).
local h = require "spec.helpers"
local memory = require "chorus.store.memory"
local json = require "chorus.json"
local runner_mod = require "chorus.run.memory"

describe("memory store", function()
  require("spec.shared.store_contract")(function()
    local store = memory.new()
    local engine = h.engine({ store = store })
    return store, engine
  end)

  describe("with every ended execution archived at once", function()
    require("spec.shared.store_contract")(function()
      local store = memory.new({ recent = 0 })
      local engine = h.engine({ store = store })
      return store, engine
    end)
  end)

  it("keeps at most max_finished finished executions", function()
    local store = memory.new({ max_finished = 3 })
    local engine = h.engine({ store = store })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    local ids = {}
    for i = 1, 5 do ids[i] = engine:execute(cfg, {}):wait().id end
    assert.is_nil(store:get_record(ids[1]))
    assert.is_nil(store:get_record(ids[2]))
    assert.is_table(store:get_record(ids[3]))
    local _, total = store:list_executions({})
    assert.equal(3, total)
  end)

  describe("archive", function()
    -- 12 executions through a store keeping 10, the last 2 as objects:
    -- 1-2 dropped, 3-10 archived, 11-12 objects. Odd ones fail, tenants
    -- alternate t1/t2 every 3, users u1/u2 alternate.
    local store, engine, execs, records
    before_each(function()
      store = memory.new({ max_finished = 10, recent = 2 })
      engine = h.engine({ store = store })
      local ok_cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
      local bad_cfg = assert(engine:validate(h.flat("sequential", { { id = "f", agent = "fail" } })))
      execs, records = {}, {}
      for i = 1, 12 do
        local e = engine:execute(i % 2 == 1 and bad_cfg or ok_cfg, { i = i, list = json.array({ 1, 2 }), none = json.array(), nothing = json.null },
          { tenant_id = (math.floor((i - 1) / 3) % 2 == 0) and "t1" or "t2", user_id = "u" .. (i % 2 + 1) }):wait()
        execs[i] = e
        records[i] = e:record() -- while it is an object
        records[i].node_id, records[i].claims = nil, 0 -- what the store adds (no node_id given here)

      end
    end)

    it("drops the oldest, archives the middle, keeps the recent as objects", function()
      assert.is_nil(store:get_record(execs[1].id))
      assert.is_nil(store:get_record(execs[2].trace_id))
      assert.is_nil(store:get_execution(execs[2].id))
      -- Archived records read back exactly: numbers, arrays (also the
      -- API's text: an array stays an array), json.null.
      for i = 3, 12 do
        local rec = store:get_record(execs[i].id)
        assert.same(records[i], rec)
        assert.same(records[i], store:get_record(execs[i].trace_id))
        assert.equal(json.encode(records[i]), json.encode(rec))
      end
      assert.is_nil(store.by_id[execs[10].id]) -- archived: no object kept
      assert.equal(execs[11], store.by_id[execs[11].id])
      assert.equal(8, store.archive:count())
    end)

    it("scopes archived records like live ones", function()
      local e = execs[4] -- t2, u1
      assert.equal("t2", e.tenant_id)
      assert.is_table(store:get_record(e.id, { tenant_id = "t2", user_id = "u1" }))
      assert.is_nil(store:get_record(e.id, { tenant_id = "t1" }))
      assert.is_nil(store:get_record(e.id, { tenant_id = "t2", user_id = "u2" }))
      assert.is_table(store:get_record(e.id, { admin = true }))
    end)

    it("lists objects and archived records together, newest first, with filters and pages", function()
      local all, total = store:list_executions({ limit = 100 })
      assert.equal(10, total)
      local expected = {}
      for i = 12, 3, -1 do expected[#expected + 1] = execs[i] end
      table.sort(expected, function(a, b)
        if a.created_at ~= b.created_at then return a.created_at > b.created_at end
        return a.id > b.id
      end)
      for i, e in ipairs(expected) do
        assert.equal(e.id, all[i].id)
        assert.same(json.decode(json.encode(e:summary())), json.decode(json.encode(all[i])))
      end
      -- Every page of every size is the same slice of that order.
      for limit = 1, 4 do
        for offset = 0, 11 do
          local items, t = store:list_executions({ limit = limit, offset = offset })
          assert.equal(10, t)
          for k = 1, limit do
            assert.equal(all[offset + k] and all[offset + k].id, items[k] and items[k].id)
          end
        end
      end
      local failed, nf = store:list_executions({ status = "failed", limit = 100 })
      assert.equal(5, nf) -- 3, 5, 7, 9, 11
      for _, s in ipairs(failed) do assert.equal("failed", s.status) end
      local _, n = store:list_executions({ tenant_id = "t2", user_id = "u1" })
      local want = 0
      for i = 3, 12 do
        if execs[i].tenant_id == "t2" and execs[i].user_id == "u1" then want = want + 1 end
      end
      assert.equal(want, n)
      local _, byname = store:list_executions({ config = "spec" })
      assert.equal(10, byname)
      local _, byid = store:list_executions({ config = execs[3].config_id or "none" })
      assert.equal(execs[3].config_id and 10 or 0, byid)
    end)

    it("refuses controls on an archived execution as on an ended one", function()
      local view = assert(store:get_execution(execs[4].trace_id))
      assert.equal(execs[4].id, view.id)
      assert.equal("completed", view.status)
      assert.same({ nil, "cannot cancel an execution that is completed" }, { view:cancel() })
      assert.same({ nil, "cannot pause an execution that is completed" }, { view:pause() })
      assert.same({ nil, "execution is not paused" }, { view:resume() })
      assert.same({ nil, "step a is not awaiting approval" }, { view:approve("a") })
      local runner = runner_mod.new({ engine = engine })
      local ok, err, code = runner:control(execs[4].id, "cancel", {}, { admin = true })
      assert.is_nil(ok)
      assert.equal("invalid_state", code)
      assert.equal("cannot cancel an execution that is completed", err)
      -- Out of scope: not found, as for a live one.
      code = select(3, runner:control(execs[4].id, "cancel", {}, { tenant_id = "t1", user_id = "u1" }))
      assert.equal("not_found", code)
    end)

    it("replays an idempotent submit whose execution was archived", function()
      local runner = runner_mod.new({ engine = engine })
      local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
      local first = assert(runner:submit(cfg, {}, { idempotency_key = "k1", tenant_id = "t1" }))
      assert.is_table(engine.store:get_execution(first.execution_id)):wait()
      -- Push it out of the recent ones.
      for _ = 1, 3 do engine:execute(cfg, {}):wait() end
      assert.is_nil(store.by_id[first.execution_id])
      local again = assert(runner:submit(cfg, {}, { idempotency_key = "k1", tenant_id = "t1" }))
      assert.equal(first.execution_id, again.execution_id)
      assert.equal("completed", again.status)
      assert.is_true(again.replayed)
    end)
  end)

  it("archives what it can of a record JSON cannot hold, and says so", function()
    local store = memory.new({ max_finished = 5, recent = 0 })
    local fake = {
      id = "e1", trace_id = "t1", status = "completed", config_name = "c", created_at = 1,
      record = function() return { id = "e1", output = { f = print } } end,
      summary = function() return { id = "e1", trace_id = "t1", status = "completed", config = "c" } end,
    }
    store:insert_execution(fake)
    assert.is_true(store:update_execution(fake))
    local rec = assert(store:get_record("t1"))
    assert.equal("completed", rec.status)
    assert.same({}, rec.steps)
    assert.matches("record not kept: .*function", rec.error)
  end)

  it("native.archive: bad arguments are bugs and raise; select reports totals and bounds", function()
    local native = require "chorus.native"
    assert.has_error(function() native.archive(-1) end)
    assert.has_error(function() native.archive(2 ^ 30) end)
    local ar = assert(native.archive(2))
    assert.has_error(function() ar:put(nil, "t", "completed", nil, nil, nil, nil, 1, "{}") end)
    assert.has_error(function() ar:put("i", "t", 5, nil, nil, nil, nil, 1, "{}") end)
    assert.is_true(ar:put("i1", "t1", "completed", "c", nil, nil, nil, 1, "{}"))
    assert.is_true(ar:put("i2", "t2", "failed", "c", nil, "u", nil, 2, "[]"))
    assert.is_true(ar:put("i3", "t3", "completed", "c", nil, nil, nil, 3, "{}"))
    assert.is_nil(ar:get("i1")) -- capacity 2: the oldest went
    assert.same({ "[]", "failed", "i2", "t2", "c", nil, "u", nil, 2 }, { ar:get("t2") })
    local total, ids, created = ar:select(nil, "c", nil, nil, 1)
    assert.equal(2, total)
    assert.same({ "i3" }, ids)
    assert.same({ 3 }, created)
    assert.has_error(function() ar:select(nil, nil, nil, nil, -1) end)
    assert.equal(2, ar:count())
    assert.is_true(ar:bytes() > 0)
  end)

  it("survives an archive that cannot take a record or select: logged, lists say why", function()
    require("spec.support.log_guard").expect("not archived")
    local store = memory.new({ max_finished = 5, recent = 0 })
    local engine = h.engine({ store = store })
    local cfg = assert(engine:validate(h.flat("sequential", { { id = "a", agent = "echo" } })))
    local real = store.archive
    store.archive = setmetatable({
      put = function() return nil, "out of memory" end,
      select = function() return nil, "out of memory" end,
    }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
    local e = engine:execute(cfg, {}):wait()
    assert.equal("completed", e.status) -- the execution is not hurt
    assert.is_nil(store:get_record(e.id)) -- not kept, and not half-kept
    local items, err = store:list_executions({})
    assert.is_nil(items)
    assert.equal("out of memory", err)
  end)
end)
