-- The tws agent's TLS path for real: engines usually present a certificate
-- from their own CA. A throwaway CA and server certificate are made with
-- openssl here, and nginx terminates TLS in front of fakes/tws.lua
-- (Chorus's server speaks plain HTTP only). With the CA in TWS_CA_FILE the
-- agent talks to the engine; without it, or with a wrong CA, the step
-- fails with a clear TLS error that is not retried.
local h = require "spec.helpers"
local env = require "spec.support.env"
local native = require "chorus.native"

local fake_mod = dofile(native.home .. "/fakes/tws.lua")

local USER, PASSWORD = "tls_user", "tls-Pa55word-42"

local function find_nginx()
  for _, p in ipairs({ "/usr/sbin/nginx", "/usr/bin/nginx" }) do
    local f = io.open(p)
    if f then f:close() return p end
  end
end

local function sh(cmd)
  local code, out, err = h.sh("(" .. cmd .. ")") -- h.sh redirects only the last command of a list
  assert(code == 0, cmd .. "\n" .. out .. err)
  return out
end

-- A CA and a certificate for 127.0.0.1 signed by it (ECDSA: fast).
local function make_ca(dir, name)
  sh(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
    .. "-subj '/CN=Chorus spec %s CA' -keyout %s-ca.key -out %s-ca.crt"):format(dir, name, name, name))
end

local function make_server_cert(dir)
  h.write(dir .. "/san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  sh(("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=127.0.0.1' "
    .. "-keyout server.key -out server.csr && openssl x509 -req -in server.csr -CA good-ca.crt -CAkey good-ca.key "
    .. "-CAcreateserial -days 2 -extfile san.ext -out server.crt"):format(dir))
end

local function free_port()
  local server = require "chorus.http.server"
  local s = assert(server.listen({ port = 0 }, function() return 200 end))
  local port = s.port
  s:close()
  return port
end

describe("tws agent over TLS (nginx in front of the fake engine)", function()
  local nginx = find_nginx()
  local dir, fake, pid, restore, engine
  local tls_url

  setup(function()
    assert(nginx, "nginx is needed for this spec: bash scripts/deps.sh --services installs it")
    dir = h.tmpdir()
    make_ca(dir, "good")
    make_ca(dir, "other")
    make_server_cert(dir)
    fake = assert(fake_mod.start({ port = 0, user = USER, password = PASSWORD, run_ms = 0 }))
    local port = free_port()
    h.write(dir .. "/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/server.crt;
    ssl_certificate_key %s/server.key;
    location / { proxy_pass http://127.0.0.1:%d; proxy_set_header Host $host; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, dir, dir, fake.port))
    pid = h.spawn(("%s -p %s -c %s/nginx.conf -e %s/error.log"):format(nginx, dir, dir, dir), dir .. "/nginx.out")
    tls_url = "https://127.0.0.1:" .. port
    -- Ready once the port answers TLS (with the right CA).
    local client = require "chorus.http.client"
    assert(h.wait_until(function()
      local res = client.get(tls_url .. "/twsd/", { ca_file = dir .. "/good-ca.crt", timeout_ms = 500 })
      return res ~= nil
    end, 10000), "nginx did not start: " .. (io.open(dir .. "/nginx.out") and io.open(dir .. "/nginx.out"):read("*a") or ""))
    restore = env.set({ TWS_URL = tls_url, TWS_USER = USER, TWS_PASSWORD = PASSWORD, TWS_CA_FILE = false })
    engine = h.engine()
  end)

  teardown(function()
    if restore then restore() end
    if pid then h.kill(pid) end
    if fake then fake:close() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function run_status(extra_env)
    local r = env.set(extra_env or {})
    local exec = h.run(h.flat("sequential", { { id = "t1", agent = "tws", params = { operation = "status" },
      retry = { max_attempts = 3 } } }), { job_name = "BACKUP_NIGHTLY" }, { engine = engine })
    r()
    return exec, exec:run_of("t1")
  end

  it("trusts the engine's CA from TWS_CA_FILE", function()
    local n = #fake.requests
    local exec, sr = run_status({ TWS_CA_FILE = dir .. "/good-ca.crt" })
    assert.equal("completed", exec.status, sr.error)
    assert.equal("SUCC", sr.output.internal_status)
    assert.equal(tls_url, sr.output.engine)
    assert.equal(n + 1, #fake.requests) -- it went through nginx to the fake
    assert.matches("^00%-", fake.requests[#fake.requests].headers["traceparent"])
  end)

  it("without the CA: a TLS error naming TWS_CA_FILE, not retried", function()
    local exec, sr = run_status()
    assert.equal("failed", exec.status)
    assert.matches("^tws %(step t1%): POST plan/job/query: TLS failure talking to " .. tls_url:gsub("%p", "%%%0")
      .. " %(with the system's CAs; a self%-signed engine needs its CA in TWS_CA_FILE%)", sr.error)
    assert.equal(1, sr.attempts)
    assert.is_nil(sr.error:find(PASSWORD, 1, true))
  end)

  it("with another CA: the same TLS error, saying which CA file was used", function()
    local exec, sr = run_status({ TWS_CA_FILE = dir .. "/other-ca.crt" })
    assert.equal("failed", exec.status)
    assert.matches("TLS failure talking to .* %(with the CA file from TWS_CA_FILE;", sr.error)
    assert.equal(1, sr.attempts)
  end)

  it("a CA file that cannot be read fails before any request", function()
    local n = #fake.requests
    local exec, sr = run_status({ TWS_CA_FILE = dir .. "/missing.crt" })
    assert.equal("failed", exec.status)
    assert.matches("^tws %(step t1%): the CA file from TWS_CA_FILE cannot be read: .*missing.crt", sr.error)
    assert.equal(1, sr.attempts)
    assert.equal(n, #fake.requests)
  end)

  it("a CA file that is not PEM is a TLS error too", function()
    h.write(dir .. "/garbage.crt", "not a certificate\n")
    local exec, sr = run_status({ TWS_CA_FILE = dir .. "/garbage.crt" })
    assert.equal("failed", exec.status)
    assert.matches("TLS failure", sr.error)
    assert.equal(1, sr.attempts)
  end)

end)
