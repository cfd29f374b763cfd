-- native.reserve_port: the port the supervisor of `serve --workers` holds
-- (bound with SO_REUSEPORT, never listening) so its workers can share it.
local native = require "chorus.native"
local server = require "chorus.http.server"

describe("native.reserve_port", function()
  it("port 0 reserves a free port that listeners with SO_REUSEPORT share", function()
    local r, port = native.reserve_port("127.0.0.1", 0)
    assert.is_userdata(r)
    assert.is_true(port > 0)
    local srv = assert(server.listen({ host = "127.0.0.1", port = port, reuseport = true },
      function() return 204 end))
    assert.equal(port, srv.port)
    srv:close()
    r:close()
    r:close() -- twice is harmless
  end)

  it("says which address is in use", function()
    local srv = assert(server.listen({ host = "127.0.0.1", port = 0 }, function() return 204 end))
    local r, err = native.reserve_port("127.0.0.1", srv.port)
    srv:close()
    assert.is_nil(r)
    assert.equal(("cannot listen on 127.0.0.1:%d: address already in use"):format(srv.port), err)
  end)

  it("says which host it cannot resolve, and refuses a port out of range", function()
    local r, err = native.reserve_port("", 0)
    assert.is_nil(r)
    assert.matches("^cannot resolve :", err)
    assert.has_error(function() native.reserve_port("127.0.0.1", 70000) end)
  end)
end)
