// How long a streamed piece of an answer takes from the model's server to a
// WebSocket subscriber, with many executions streaming at once. Prints one
// JSON line. Run through bench/agents/run.sh (node >= 20).
//
//   node delta_latency.mjs BASE_URL KEY [EXECUTIONS] [PIECES] [TOKEN_MS] [FIRST_MS] [JITTER_MS]
//
// The server (chorus serve) reaches fakes/llm.lua as its OPENAI_BASE_URL.
// A config of two steps: a gate waiting for approval, then an llm step
// streaming an answer of PIECES pieces (the fake's x-fake-stamps: each
// piece is "@<wall-clock ms> ", stamped as the fake writes it), the first
// FIRST_MS after the request (a model's time to first token: real ones
// take hundreds of ms; FIRST_MS=0 streams at once, into the burst of the
// 100 approvals and connections), then TOKEN_MS apart. JITTER_MS (0): each
// stream's first piece comes up to that much later, drawn per stream (with
// 0 the streams tick in step: every TOKEN_MS the pieces of all of them
// land at once, the worst case; real models' times to first token vary).
// EXECUTIONS executions start; one subscriber per execution opens
// /ws/executions/{trace}, replays up to the gate, and once all are live
// every gate is approved. Every piece is measured: arrival at the
// subscriber (taken at the socket read, before decoding) minus its stamp.
// Checks: every piece of every execution arrives once, each execution
// completes.
import { RawWebSocket, wallMs } from "../api/raw_ws.mjs";

const [base, key, nArg, piecesArg, tokenArg, firstArg, jitterArg] = process.argv.slice(2);
const N = Number(nArg || 100);
const PIECES = Number(piecesArg || 50);
const TOKEN_MS = Number(tokenArg || 20);
const FIRST_MS = Number(firstArg ?? 300);
const JITTER_MS = Number(jitterArg ?? 0);
const API = `${base}/api/v1/orchestrations`;
const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
const TIMEOUT_MS = Number(process.env.RUN_TIMEOUT_MS || 120000);

async function call(method, path, body) {
  const res = await fetch(`${API}${path}`, { method, headers: auth, body: body && JSON.stringify(body) });
  const text = await res.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch { /* reported by the caller */ }
  return { status: res.status, doc, text };
}

function until(pred, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);

async function main() {
  const config = {
    name: `bench-delta-${process.pid}`, strategy: "sequential",
    steps: [
      { id: "gate", agent: "echo", approval: true },
      { id: "ask", agent: "llm", dependencies: ["gate"], timeout_ms: 120000,
        params: { prompt: "stream", stream: true,
          headers: { "x-fake-stamps": String(PIECES), "x-fake-token-ms": String(TOKEN_MS),
            "x-fake-first-ms": String(FIRST_MS), "x-fake-first-jitter-ms": String(JITTER_MS) } } },
    ],
  };
  const created = await call("POST", "/configs", config);
  if (created.status !== 201 && created.status !== 409) throw new Error(`create config: ${created.status} ${created.text}`);

  const subs = [];
  let live = 0;
  for (let i = 0; i < N; i++) {
    const started = await call("POST", `/execute/bench-delta-${process.pid}`, { input: { i } });
    if (started.status !== 202) throw new Error(`execute answered ${started.status}: ${started.text}`);
    const s = { trace: started.doc.trace_id, arrivals: [], texts: [], live: false, closeCode: null, error: null };
    const ws = new RawWebSocket(`${base.replace(/^http/, "ws")}/ws/executions/${s.trace}?api_key=${encodeURIComponent(key)}`);
    s.ws = ws;
    ws.onmessage = (e) => {
      s.arrivals.push(e.at);
      s.texts.push(e.data);
      if (!s.live && e.data.includes('"step.approval"')) { s.live = true; live++; }
    };
    ws.onerror = (e) => { s.error = String(e?.message || "error"); };
    ws.onclose = (e) => { s.closeCode = e.code; };
    subs.push(s);
  }
  await until(() => live === N || subs.some((s) => s.error), TIMEOUT_MS, "every subscriber to replay up to the gate");
  const bad = subs.find((s) => s.error);
  if (bad) throw new Error(`a subscriber failed: ${bad.error}`);
  const t0 = wallMs();
  await Promise.all(subs.map((s) => call("POST", `/executions/${s.trace}/steps/gate/approve`, { reason: "bench" })
    .then((r) => { if (r.status !== 200) throw new Error(`approve: ${r.status} ${r.text}`); })));
  await until(() => subs.every((s) => s.closeCode !== null), TIMEOUT_MS, "every execution to end");
  const seconds = (wallMs() - t0) / 1000;

  // The whole delay, and its two halves: the model's server to the
  // event's emission in Chorus (its `at`), and the emission to the
  // subscriber's socket.
  const delays = [], toEmit = [], toSub = [];
  let events = 0, completed = 0, missing = 0;
  for (const s of subs) {
    let pieces = 0;
    for (let i = 0; i < s.texts.length; i++) {
      const e = JSON.parse(s.texts[i]);
      if (e.type === "step.delta" && e.step_id === "ask") {
        events++;
        // RFC 3339 with milliseconds (older servers: epoch seconds)
        const at = typeof e.at === "string" ? Date.parse(e.at) : Number(e.at) * 1000;
        toSub.push(s.arrivals[i] - at);
        for (const m of e.delta.matchAll(/@(\d+\.\d+) /g)) {
          pieces++;
          delays.push(s.arrivals[i] - Number(m[1]));
          toEmit.push(at - Number(m[1]));
        }
      }
      if (e.type === "result" && e.execution && e.execution.status === "completed") completed++;
    }
    if (pieces !== PIECES) missing += PIECES - pieces;
  }
  for (const a of [delays, toEmit, toSub]) a.sort((x, y) => x - y);
  process.stdout.write(JSON.stringify({
    executions: N, pieces_each: PIECES, token_ms: TOKEN_MS, first_ms: FIRST_MS, first_jitter_ms: JITTER_MS,
    seconds: r3(seconds),
    pieces: delays.length, delta_events: events, pieces_per_event: r3(delays.length / Math.max(1, events)),
    p50_ms: r3(pct(delays, 50)), p99_ms: r3(pct(delays, 99)), max_ms: r3(delays[delays.length - 1]),
    model_to_event_p50_ms: r3(pct(toEmit, 50)), model_to_event_p99_ms: r3(pct(toEmit, 99)),
    event_to_subscriber_p50_ms: r3(pct(toSub, 50)), event_to_subscriber_p99_ms: r3(pct(toSub, 99)),
    ok: missing === 0 && completed >= N, missing_pieces: missing, completed,
  }) + "\n");
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`delta_latency: ${err.stack || err}\n`);
  process.exit(1);
});
