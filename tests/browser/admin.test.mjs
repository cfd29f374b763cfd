// The admin page end to end in a real browser: Debian's headless Chromium
// driven by playwright-core (nothing downloaded at run time), against real
// `chorus serve` processes: with PostgreSQL (keys for an operator, a
// viewer, an admin, one revoked during the test) and in memory.
//
// Run by scripts/test (tests/browser/run.sh). Any JavaScript error on a
// page, or a console error other than an API call the scenario makes fail
// on purpose, fails the test. Screenshots go to build/artifacts/browser/.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
const BIN = process.env.CHORUS_BIN || join(ROOT, "build/chorus");
const ART = process.env.CHORUS_ARTIFACTS || join(ROOT, "build/artifacts/browser");
const PG = process.env.CHORUS_TEST_PG;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

mkdirSync(ART, { recursive: true });
for (const f of readdirSync(ART)) if (f.endsWith(".png")) rmSync(join(ART, f));
const scratch = mkdtempSync(join(tmpdir(), "chorus-browser-"));

// ---- the servers ---------------------------------------------------------

const servers = [];

function startServe(args, env) {
  return new Promise((ok, fail) => {
    const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", ...args], {
      env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const timer = setTimeout(() => fail(new Error(`serve did not start:\n${log}`)), 15000);
    const onData = (d) => {
      log += d;
      const m = log.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m && timer) {
        clearTimeout(timer);
        const srv = { child, base: `http://127.0.0.1:${m[1]}`, log: () => log };
        servers.push(srv);
        ok(srv);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => { clearTimeout(timer); if (!log.match(/listening on/)) fail(new Error(`serve exited ${code}:\n${log}`)); });
  });
}

function stopServers() {
  return Promise.all(servers.map((s) => new Promise((ok) => {
    if (s.child.exitCode !== null) return ok();
    s.child.on("exit", ok);
    s.child.kill("SIGTERM");
    setTimeout(() => s.child.kill("SIGKILL"), 15000).unref();
  })));
}

function chorus(...args) {
  return execFileSync(BIN, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function freshDatabase() {
  const name = `browser_${process.pid}_${Date.now()}`;
  execFileSync("psql", [PG, "-q", "-c", `CREATE DATABASE ${name}`], { stdio: ["ignore", "pipe", "pipe"] });
  const url = PG.replace(/\/[^/]*$/, `/${name}`);
  chorus("migrate", "up", "--db", url);
  return url;
}

function createKey(db, tenant, user, role) {
  const out = chorus("keys", "create", "--tenant", tenant, "--user", user, "--role", role, "--db", db).trim().split("\n");
  const key = out[out.length - 1].trim();
  assert.match(key, /^chk_[0-9a-f]{64}$/);
  return key;
}

// api(srv, key, method, path, body) -> {status, body}: a client of its own
// (setup, and checks of what the page showed).
async function api(srv, key, method, path, body) {
  const res = await fetch(srv.base + path, { method, headers: { authorization: `Bearer ${key}`,
    "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// ---- the browser -------------------------------------------------------

let context;
const problems = []; // console errors and page errors of every page
const expectedMissing = new Set(); // pages the scenario asks for to see a 404

async function newPage(label) {
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`[${label}] page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const url = (m.location() && m.location().url) || "";
    // A refused API call the scenario makes on purpose is logged by the
    // browser as a failed resource: allowed for /api/ only (a missing
    // script or stylesheet of the page still fails the test).
    if (/^Failed to load resource: the server responded with a status of (4\d\d)/.test(m.text())
      && (/\/api\/v1\//.test(url) || expectedMissing.has(url))) return;
    problems.push(`[${label}] console error: ${m.text()} (${url})`);
  });
  return page;
}

let shots = 0;
async function shot(page, name) {
  const file = join(ART, `${String(++shots).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// No page ever shows a raw stack trace (Lua's or JavaScript's).
async function noStackTrace(page) {
  const text = await page.evaluate(() => document.body.innerText);
  assert.doesNotMatch(text, /stack traceback/i);
  assert.doesNotMatch(text, /\n\s*at \S+ \(\S+:\d+:\d+\)/);
}

async function signIn(page, srv, key) {
  await page.goto(`${srv.base}/`);
  await page.waitForSelector("#api-key");
  assert.match(page.url(), /\/admin\/#\/signin$/);
  await page.fill("#api-key", key);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#top:not([hidden])");
  await page.waitForSelector("main[data-view=overview] .kpis");
}

async function setEditor(page, selector, text) {
  await page.fill(selector, text);
}

// The line (1-based) of the first line of text containing needle.
function lineOf(text, needle) {
  return text.split("\n").findIndex((l) => l.includes(needle)) + 1;
}

// watch(page, until) -> what the graph and the step panels showed, sampled
// every 25 ms until until() holds: statuses seen per step (in order), and
// the streamed text of each step as it grew.
async function watch(page, until, ms = 30000) {
  const seen = {}, streams = {};
  const deadline = Date.now() + ms;
  for (;;) {
    const snap = await page.evaluate(() => ({
      nodes: [...document.querySelectorAll(".dag .node")].map((n) => [n.dataset.step, n.dataset.status]),
      streams: [...document.querySelectorAll("pre.stream")].map((p) => [p.dataset.stream, p.textContent]),
      status: (document.querySelector("#exec-status [data-status]") || {}).dataset?.status,
    }));
    for (const [id, st] of snap.nodes) {
      const list = (seen[id] = seen[id] || []);
      if (list[list.length - 1] !== st) list.push(st);
    }
    for (const [id, text] of snap.streams) {
      const list = (streams[id] = streams[id] || []);
      if (list[list.length - 1] !== text) list.push(text);
    }
    if (await until(snap)) return { seen, streams, status: snap.status };
    if (Date.now() > deadline) throw new Error(`timed out; seen ${JSON.stringify(seen)} status ${snap.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const execStatus = (page) => page.getAttribute("#exec-status [data-status]", "data-status");

async function runFromConfigPage(page, srv, name, input) {
  await page.goto(`${srv.base}/admin/#/configs/${name}?tab=run`);
  await page.waitForSelector("#run-input");
  if (input !== undefined) await setEditor(page, "#run-input", JSON.stringify(input, null, 2));
  await page.click("#run");
  await page.waitForURL(/#\/executions\/[0-9a-f-]{36}$/);
  await page.waitForSelector("#exec-status [data-status]");
  return page.url().match(/executions\/([0-9a-f-]{36})$/)[1];
}

// ---- the configs of the scenario ---------------------------------------

const WORDS = ["the", "job", "failed", "because", "the", "disk", "is", "full"];

// The first try: an unknown agent and a dependency on no step.
const BROKEN = `{
  "name": "triage",
  "description": "collect, analyze (streamed), notify",
  "strategy": "parallel",
  "steps": {
    "steps": [
      { "id": "collect", "agent": "delay", "params": { "ms": 500, "output": { "job": "PAYROLL" } } },
      { "id": "analyze", "agent": "streamer", "dependencies": ["collect"],
        "params": { "words": ${JSON.stringify(WORDS)}, "interval_ms": 120 } },
      { "id": "retrying", "agent": "flaky", "params": { "fail_times": 1 }, "dependencies": ["collect"],
        "retry": { "max_attempts": 3, "backoff_ms": 150 } },
      { "id": "notify", "agent": "no_such_agent", "params": { "ms": 200 },
        "dependencies": ["analyze", "missing_step"] }
    ]
  }
}`;
const FIXED = BROKEN.replace('"agent": "no_such_agent"', '"agent": "delay"').replace(', "missing_step"]', ', "retrying"]');

const GATED = { name: "gated", strategy: "sequential", steps: [
  { id: "prepare", agent: "echo", params: { output: { ready: true } } },
  { id: "gate", agent: "echo", approval: true, params: { output: { approved: true } }, dependencies: ["prepare"] },
  { id: "act", agent: "echo", dependencies: ["gate"] }] };

const LONG = { name: "long", strategy: "sequential", steps: [
  { id: "wait", agent: "delay", params: { ms: 600000 }, timeout_ms: 700000 }] };

const SHAPES = { name: "shapes", strategy: "consensus", description: "fallback chains and consensus groups",
  steps: [
    { id: "ask", agent: "echo", params: { output: "x" }, on_failure: "fallback" },
    { id: "ask_backup", agent: "echo", is_fallback: true, fallback_for: "ask" },
    { id: "vote_a", agent: "echo", consensus_group: "verdict", dependencies: ["ask"] },
    { id: "vote_b", agent: "echo", consensus_group: "verdict", dependencies: ["ask"] },
    { id: "vote_c", agent: "echo", consensus_group: "verdict", dependencies: ["ask"] }] };

// ---- the scenario --------------------------------------------------------

before(async () => {
  context = await chromium.launchPersistentContext(mkdtempSync(join(scratch, "profile-")), {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
});

after(async () => {
  if (context) await context.close();
  await stopServers();
  rmSync(scratch, { recursive: true, force: true });
  console.log(`screenshots: ${ART}`);
});

afterEach(() => {
  const found = problems.splice(0);
  assert.deepEqual(found, [], "the page logged errors");
});

describe("with PostgreSQL: operator, viewer, admin keys", { skip: !PG && "CHORUS_TEST_PG is not set" }, () => {
  let srv, db, keys, page;

  before(async () => {
    db = freshDatabase();
    keys = {
      operator: createKey(db, "acme", "alice", "operator"),
      viewer: createKey(db, "acme", "victor", "viewer"),
      admin: createKey(db, "acme", "root", "admin"),
      doomed: createKey(db, "acme", "dora", "operator"),
    };
    const broken = join(scratch, "broken-scripts");
    mkdirSync(join(broken, "agents"), { recursive: true });
    writeFileSync(join(broken, "agents", "half_written.lua"), "return {\n  name = \"half_written\",\n  call = function(\nend\n");
    srv = await startServe(["--db", db, "--scripts", join(HERE, "scripts"), "--scripts", broken], {});
    page = await newPage("operator");
  });

  test("a wrong key is refused with the server's message; the right one signs in", async () => {
    await page.goto(`${srv.base}/admin/`);
    await page.waitForSelector("#api-key");
    await page.fill("#api-key", `chk_${"0".repeat(64)}`);
    await page.click("#signin-form button[type=submit]");
    await page.waitForSelector(".signin-status .error-box");
    assert.equal(await page.getAttribute(".signin-status .error-box", "data-code"), "unauthorized");
    assert.match(await page.textContent(".signin-status .error-box"), /invalid API key/);
    await shot(page, "signin-refused");
    await signIn(page, srv, keys.operator);
    assert.match(await page.textContent("#who"), /operator/);
    await noStackTrace(page);
  });

  test("a config with errors shows each next to its line; fixed, it is created and drawn", async () => {
    await page.click('#nav a[data-nav="configs"]');
    await page.click("#new-config");
    await page.waitForSelector("#config-editor");
    await setEditor(page, "#config-editor", BROKEN);
    await page.click("#save-config");
    await page.waitForSelector(".editor .note");
    assert.equal(await page.getAttribute("#editor-result .error-box", "data-code"), "validation_failed");
    const notes = await page.$$eval(".editor .note", (ns) => ns.map((n) => ({ line: Number(n.dataset.line), text: n.textContent })));
    const agentLine = lineOf(BROKEN, '"agent": "no_such_agent"');
    const depLine = lineOf(BROKEN, '"missing_step"');
    const agentNote = notes.find((n) => /steps\.steps\[3\]\.agent/.test(n.text));
    assert.ok(agentNote, `no note for the agent: ${JSON.stringify(notes)}`);
    assert.equal(agentNote.line, agentLine);
    assert.match(agentNote.text, /unknown agent 'no_such_agent'/);
    const depNote = notes.find((n) => /dependencies\[1\]/.test(n.text));
    assert.ok(depNote, `no note for the dependency: ${JSON.stringify(notes)}`);
    assert.equal(depNote.line, depLine);
    assert.match(depNote.text, /unknown step 'missing_step'/);
    // the gutter marks the same lines
    const marked = await page.$$eval(".editor .ln.err", (ls) => ls.map((l) => Number(l.dataset.line)));
    assert.ok(marked.includes(agentLine) && marked.includes(depLine));
    await shot(page, "config-errors-next-to-lines");
    await noStackTrace(page);

    await setEditor(page, "#config-editor", FIXED);
    await page.click("#save-config");
    await page.waitForURL(/#\/configs\/triage\?tab=graph$/);
    await page.waitForSelector(".dag .node");
    assert.equal(await page.locator(".dag .node").count(), 4);
    assert.equal(await page.locator(".dag .edge").count(), 4);
    await shot(page, "config-graph");
  });

  test("a failing request shows the server's code and message", async () => {
    await page.goto(`${srv.base}/admin/#/configs/new`);
    await page.waitForSelector("#config-editor");
    await setEditor(page, "#config-editor", FIXED);
    await page.click("#save-config");
    await page.waitForSelector("#editor-result .error-box");
    assert.equal(await page.getAttribute("#editor-result .error-box", "data-code"), "conflict");
    assert.match(await page.textContent("#editor-result .error-box"), /a config named 'triage' already exists/);
    // invalid JSON never reaches the server: the line is marked here
    await setEditor(page, "#config-editor", '{\n  "name": "x",\n  "strategy": \n}');
    await page.click("#save-config");
    await page.waitForSelector(".editor .note");
    assert.equal(await page.getAttribute(".editor .note", "data-line"), "4");
    await noStackTrace(page);
  });

  test("run it: every step goes to completed live, the streamed answer appears as it is written", async () => {
    const trace = await runFromConfigPage(page, srv, "triage", { job_name: "PAYROLL_DAILY" });
    const marker = await page.evaluate(() => { window.__stillHere = Math.random(); return window.__stillHere; });
    const { seen, streams } = await watch(page, async (s) => s.status === "completed");
    for (const id of ["collect", "analyze", "retrying", "notify"]) {
      const list = seen[id];
      assert.ok(list.includes("running") && list[list.length - 1] === "completed", `${id}: ${list}`);
      assert.ok(list.indexOf("running") < list.lastIndexOf("completed"));
    }
    // the answer grew word by word while the step ran
    const grown = streams.analyze || [];
    assert.ok(grown.length >= 3, `streamed text seen ${grown.length} times: ${JSON.stringify(grown)}`);
    assert.equal(grown[grown.length - 1], WORDS.join(" "));
    assert.ok(grown.some((t) => t.length > 0 && t.length < WORDS.join(" ").length));
    assert.equal(await page.evaluate(() => window.__stillHere), marker, "the page reloaded instead of updating live");
    // timeline: a bar per step, the retried step marked
    assert.equal(await page.locator(".timeline-chart rect.bar[data-status=completed]").count(), 4);
    assert.ok(await page.locator(".timeline-chart .retry-mark").count() >= 1);
    assert.match(await page.textContent(".timeline-chart"), /2 attempts \(1 retry\)/);
    // step panels: output, tokens, agent version (after the REST refresh)
    await page.waitForSelector('[data-output="analyze"]', { state: "attached" });
    assert.match(await page.textContent('[data-output="analyze"]'), /the job failed because the disk is full/);
    const analyze = page.locator('details.step-panel[data-step="analyze"]');
    assert.match(await analyze.textContent(), /Tokens\s*24/);
    assert.match(await analyze.textContent(), /streamer @ [0-9a-f]{12}/);
    assert.equal(await page.locator(".dag .node[data-status=completed]").count(), 4);
    await shot(page, "execution-completed");

    // a reload replays the history: same statuses, the streamed text again
    await page.reload();
    await page.waitForSelector('pre.stream[data-stream="analyze"]', { state: "attached" });
    await watch(page, async (s) => s.status === "completed" && s.nodes.every(([, st]) => st === "completed"));
    assert.equal(await page.textContent('pre.stream[data-stream="analyze"]'), WORDS.join(" "));
    const rec = await api(srv, keys.operator, "GET", `/api/v1/orchestrations/status/${trace}`);
    assert.equal(rec.body.status, "completed");
    await noStackTrace(page);

    // Run again: the input is prefilled from the last run
    await page.goto(`${srv.base}/admin/#/configs/triage?tab=run`);
    await page.waitForSelector("#run-input");
    assert.match(await page.inputValue("#run-input"), /PAYROLL_DAILY/);
  });

  test("approve a paused step, reject another with a reason", async () => {
    assert.equal((await api(srv, keys.operator, "POST", "/api/v1/orchestrations/configs", GATED)).status, 201);
    await runFromConfigPage(page, srv, "gated", {});
    await page.waitForSelector('[data-approval="gate"] [data-action=approve]');
    assert.equal(await execStatus(page), "paused");
    await shot(page, "execution-awaiting-approval");
    await page.click('[data-approval="gate"] [data-action=approve]');
    await watch(page, async (s) => s.status === "completed");
    await page.waitForSelector('details.step-panel[data-step="gate"]');
    await page.waitForFunction(() => /approved by alice/.test(document.querySelector('details.step-panel[data-step="gate"]').textContent));
    assert.equal(await page.locator(".dag .node[data-status=completed]").count(), 3);

    await runFromConfigPage(page, srv, "gated", {});
    await page.waitForSelector('[data-approval="gate"] input.reason');
    await page.fill('[data-approval="gate"] input.reason', "not during the close");
    await page.click('[data-approval="gate"] [data-action=reject]');
    await watch(page, async (s) => s.status === "failed");
    await page.waitForFunction(() => /rejected: not during the close/.test(document.querySelector('details.step-panel[data-step="gate"]').textContent));
    await shot(page, "execution-rejected");
    await noStackTrace(page);
  });

  test("cancel a long step", async () => {
    assert.equal((await api(srv, keys.operator, "POST", "/api/v1/orchestrations/configs", LONG)).status, 201);
    await runFromConfigPage(page, srv, "long", {});
    await watch(page, async (s) => s.nodes.some(([id, st]) => id === "wait" && st === "running"));
    await page.click("#exec-controls [data-action=pause]");
    await watch(page, async (s) => s.status === "paused");
    assert.equal(await page.locator("#exec-controls [data-action=resume]").count(), 1);
    await page.click("#exec-controls [data-action=cancel]");
    const t0 = Date.now();
    await watch(page, async (s) => s.status === "cancelled", 10000);
    assert.ok(Date.now() - t0 < 5000, "cancel took too long");
    assert.equal(await page.locator("#exec-controls button").count(), 0);
    await shot(page, "execution-cancelled");
  });

  test("executions: filters, time range, pages, totals", async () => {
    await page.goto(`${srv.base}/admin/#/executions`);
    await page.waitForSelector("#execution-totals");
    await page.waitForFunction(() => document.querySelectorAll("#execution-list tbody tr").length >= 4);
    const totals = await page.textContent("#execution-totals");
    assert.match(totals, /4 executions/);
    assert.match(totals, /24 tokens/);
    await page.selectOption("#filter-status", "cancelled");
    await page.click("#execution-filters button[type=submit]");
    await page.waitForFunction(() => /1 executions/.test(document.querySelector("#execution-totals")?.textContent || ""));
    assert.equal(await page.locator("#execution-list tbody tr").count(), 1);
    await page.goto(`${srv.base}/admin/#/executions?since=${encodeURIComponent(new Date(Date.now() + 3600e3).toISOString())}`);
    await page.waitForFunction(() => /^0 executions/.test(document.querySelector("#execution-totals")?.textContent || ""));
    await page.goto(`${srv.base}/admin/#/executions?config=triage`);
    await page.waitForFunction(() => /1 executions/.test(document.querySelector("#execution-totals")?.textContent || ""));
    await shot(page, "executions-filtered");
  });

  test("deactivate, activate, edit: versions and their diff", async () => {
    await page.goto(`${srv.base}/admin/#/configs/triage`);
    await page.click("#toggle-active");
    await page.waitForFunction(() => document.querySelector("#toggle-active")?.textContent === "Activate");
    const refused = await api(srv, keys.operator, "POST", "/api/v1/orchestrations/execute/triage", {});
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, "invalid_state");
    await page.click("#toggle-active");
    await page.waitForFunction(() => document.querySelector("#toggle-active")?.textContent === "Deactivate");
    await page.click('[data-tab="edit"]');
    await page.waitForSelector("#config-editor");
    const text = await page.inputValue("#config-editor");
    await setEditor(page, "#config-editor", text.replace("collect, analyze (streamed), notify", "second version"));
    await page.click("#save-config");
    await page.waitForFunction(() => /v2/.test(document.querySelector(".page-head")?.textContent || ""));
    await page.click('[data-tab="versions"]');
    await page.waitForSelector("#version-diff .diff");
    const diffText = await page.textContent("#version-diff .diff");
    assert.match(diffText, /- +"description": "collect, analyze \(streamed\), notify",\+ +"description": "second version"/);
    assert.equal(await page.locator("#version-diff .diff .del").count(), 1);
    assert.equal(await page.locator("#version-diff .diff .add").count(), 1);
    assert.ok(await page.locator("#version-diff .diff .skip").count() >= 1, "unchanged lines are folded");
    await shot(page, "config-versions-diff");
  });

  test("a config with fallback chains and consensus groups is drawn with them", async () => {
    assert.equal((await api(srv, keys.operator, "POST", "/api/v1/orchestrations/configs", SHAPES)).status, 201);
    await page.goto(`${srv.base}/admin/#/configs/shapes`);
    await page.waitForSelector(".dag .node");
    assert.equal(await page.locator(".dag .group[data-group=verdict]").count(), 1);
    assert.equal(await page.locator(".dag .edge.fallback").count(), 1);
    assert.equal(await page.locator(".dag .node.is-fallback").count(), 1);
    await page.click('.dag .node[data-step="ask_backup"]');
    assert.match(await page.textContent("#step-detail"), /"fallback_for": "ask"/);
    await shot(page, "config-graph-fallback-consensus");
  });

  test("a viewer sees no write button, and the server refuses its writes anyway", async () => {
    const viewer = await newPage("viewer");
    await signIn(viewer, srv, keys.viewer);
    for (const hash of ["#/configs", "#/configs/triage", "#/configs/triage?tab=edit", "#/configs/triage?tab=run", "#/executions", "#/registry"]) {
      await viewer.goto(`${srv.base}/admin/${hash}`);
      await viewer.waitForSelector("main .page-head");
      await viewer.waitForTimeout(150);
      assert.equal(await viewer.locator("[data-write]").count(), 0, `a write button on ${hash}`);
      assert.equal(await viewer.locator("[data-action]").count(), 0, `a control on ${hash}`);
    }
    await viewer.goto(`${srv.base}/admin/#/configs/triage?tab=edit`);
    await viewer.waitForSelector("#config-editor");
    assert.equal(await viewer.getAttribute("#config-editor", "readonly"), "");
    await shot(viewer, "viewer-read-only");
    // Behind the page's back, with the page's own key.
    const trace = (await api(srv, keys.operator, "POST", "/api/v1/orchestrations/execute/long", {})).body.trace_id;
    const answers = await viewer.evaluate(async (t) => {
      const key = sessionStorage.getItem("chorus.key");
      const call = async (method, path, body) => {
        const r = await fetch(path, { method, headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body) });
        return [method, path, r.status, (await r.json()).error?.code];
      };
      return [
        await call("POST", "/api/v1/orchestrations/configs", { name: "sneaky", strategy: "sequential", steps: [{ id: "a", agent: "echo" }] }),
        await call("PATCH", "/api/v1/orchestrations/configs/triage", { is_active: false }),
        await call("PUT", "/api/v1/orchestrations/configs/triage", { name: "triage", strategy: "sequential", steps: [{ id: "a", agent: "echo" }] }),
        await call("DELETE", "/api/v1/orchestrations/configs/triage"),
        await call("POST", "/api/v1/orchestrations/execute/triage", {}),
        await call("POST", `/api/v1/orchestrations/executions/${t}/cancel`),
        await call("POST", `/api/v1/orchestrations/executions/${t}/steps/wait/approve`, {}),
        await call("POST", "/api/v1/registry/reload"),
      ];
    }, trace);
    for (const [method, path, status, code] of answers) {
      assert.equal(status, 403, `${method} ${path}`);
      assert.equal(code, "forbidden", `${method} ${path}`);
    }
    assert.equal((await api(srv, keys.operator, "GET", "/api/v1/orchestrations/configs/triage")).body.is_active, true);
    assert.equal((await api(srv, keys.operator, "POST", `/api/v1/orchestrations/executions/${trace}/cancel`)).status, 200);
    await viewer.close();
  });

  test("a revoked key returns the page to sign-in, saying why", async () => {
    const doomed = await newPage("revoked");
    await signIn(doomed, srv, keys.doomed);
    await doomed.goto(`${srv.base}/admin/#/configs`);
    await doomed.waitForSelector("#config-list table");
    chorus("keys", "revoke", keys.doomed.slice(0, 12), "--db", db);
    // keys are cached by the server for 5 s
    await doomed.waitForTimeout(5300);
    await doomed.click('#nav a[data-nav="executions"]');
    await doomed.waitForSelector("#api-key");
    assert.match(await doomed.textContent(".signin-status .error-box"), /unauthorized: invalid API key\. Sign in again/);
    assert.equal(await doomed.evaluate(() => sessionStorage.getItem("chorus.key")), null);
    await shot(doomed, "revoked-back-to-signin");
    await doomed.close();
  });

  test("registry: versions, a load error with its file and line, reload (admins)", async () => {
    const admin = await newPage("admin");
    await signIn(admin, srv, keys.admin);
    await admin.goto(`${srv.base}/admin/#/registry`);
    await admin.waitForSelector("#load-errors");
    assert.match(await admin.textContent("#load-errors"), /half_written\.lua:\d+/);
    assert.ok(await admin.locator('table[data-kind=agents] tr[data-name="streamer"]').count() === 1);
    await admin.click("#registry-reload");
    await admin.waitForSelector(".notice:not([hidden])");
    assert.match(await admin.textContent(".notice"), /Reloaded: generation \d+, 1 load error/);
    await shot(admin, "registry");
    // admins filter executions by user
    await admin.goto(`${srv.base}/admin/#/executions?user_id=alice`);
    await admin.waitForSelector("#filter-user");
    await admin.waitForFunction(() => /[1-9]\d* executions/.test(document.querySelector("#execution-totals")?.textContent || ""));
    await admin.close();
  });

  test("overview: executions by status, latency by agent, usage by config", async () => {
    await page.goto(`${srv.base}/admin/#/`);
    await page.waitForSelector(".chart.stacked rect.bar");
    const stats = (await api(srv, keys.operator, "GET", "/api/v1/stats")).body;
    assert.equal(await page.textContent("#kpi-total"), String(stats.executions.total));
    assert.ok(stats.executions.total >= 5, JSON.stringify(stats.executions));
    assert.ok(await page.locator(".chart.latency text", { hasText: "streamer" }).count() >= 1);
    assert.ok(await page.locator(".chart.usage text", { hasText: "triage" }).count() >= 1);
    await shot(page, "overview");
  });

  test("the API document, /docs, and unknown paths", async () => {
    await page.goto(`${srv.base}/docs`);
    await page.waitForSelector(".op");
    assert.match(page.url(), /\/admin\/#\/api$/);
    assert.ok(await page.locator("details.op[data-op]").count() >= 25);
    assert.equal(await page.locator('details.op[data-op="PATCH /api/v1/orchestrations/configs/{key}"]').count(), 1);
    await shot(page, "api-document");
    expectedMissing.add(`${srv.base}/admin/no/such/page.html`);
    const missing = await page.goto(`${srv.base}/admin/no/such/page.html`);
    assert.equal(missing.status(), 404);
    assert.match(await page.textContent("h1"), /Page not found/);
    const traversal = await fetch(`${srv.base}/admin/..%2f..%2fCMakeLists.txt`);
    assert.equal(traversal.status, 404);
    const apiMissing = await fetch(`${srv.base}/api/v1/nothing`);
    assert.equal(apiMissing.status, 404);
    assert.equal((await apiMissing.json()).error.code, "not_found");
  });
});

describe("in memory (CHORUS_ADMIN_KEY)", () => {
  const KEY = `chk_${"5a".repeat(32)}`;
  let srv, page;

  before(async () => {
    srv = await startServe(["--scripts", join(HERE, "scripts")], { CHORUS_ADMIN_KEY: KEY });
    page = await newPage("memory");
  });

  test("sign in, create, run and watch live, approve, cancel", async () => {
    await signIn(page, srv, KEY);
    await page.click('#nav a[data-nav="configs"]');
    await page.click("#new-config");
    await page.waitForSelector("#config-editor");
    await setEditor(page, "#config-editor", FIXED);
    await page.click("#save-config");
    await page.waitForURL(/#\/configs\/triage\?tab=graph$/);
    await runFromConfigPage(page, srv, "triage", { job_name: "MEMORY" });
    const { seen } = await watch(page, async (s) => s.status === "completed");
    for (const id of ["collect", "analyze", "retrying", "notify"]) assert.equal(seen[id][seen[id].length - 1], "completed");
    assert.ok(seen.collect.includes("running"));
    assert.equal(await page.textContent('pre.stream[data-stream="analyze"]'), WORDS.join(" "));
    await shot(page, "memory-execution-completed");

    assert.equal((await api(srv, KEY, "POST", "/api/v1/orchestrations/configs", GATED)).status, 201);
    await runFromConfigPage(page, srv, "gated", {});
    await page.click('[data-approval="gate"] [data-action=approve]');
    await watch(page, async (s) => s.status === "completed");

    assert.equal((await api(srv, KEY, "POST", "/api/v1/orchestrations/configs", LONG)).status, 201);
    await runFromConfigPage(page, srv, "long", {});
    await watch(page, async (s) => s.nodes.some(([id, st]) => id === "wait" && st === "running"));
    await page.click("#exec-controls [data-action=cancel]");
    await watch(page, async (s) => s.status === "cancelled", 10000);

    await page.goto(`${srv.base}/admin/#/`);
    await page.waitForSelector(".chart.stacked rect.bar");
    assert.equal(await page.textContent("#kpi-total"), "3");
    await shot(page, "memory-overview");
    await noStackTrace(page);
  });
});
