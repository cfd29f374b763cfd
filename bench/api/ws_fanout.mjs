// WebSocket fan-out of one execution's events to N subscribers (node >= 20;
// node 20/21 need --experimental-websocket). Prints one JSON line.
//
//   node ws_fanout.mjs BASE_URL KEY CONFIG [SUBSCRIBERS] [GATE_STEP]
//
// CONFIG's first step (GATE_STEP, default "gate") waits for an approval:
// the script starts the execution (POST execute, 202), opens SUBSCRIBERS
// sockets to /ws/executions/{trace_id}, waits until every one of them has
// replayed the history up to the step.approval event (so each is
// subscribed and live), then approves the gate. Every event emitted after
// that is measured: delay = arrival at the subscriber (wall clock, sub-ms)
// minus the event's `at` (wall clock when the server emitted it), for every
// (event, subscriber) pair. Checks: each subscriber gets every event
// (seq 1..n, no gap, no duplicate), then {"type":"result"} of a completed
// execution, then a close with code 1000.
//
// WS_CLIENT=raw uses a minimal RFC 6455 client over node:net instead of
// node's WebSocket (undici), whose per-message cost is a large part of
// what is measured with 1,000 sockets in one node process: the raw client
// shows how much of the delay is the server's.
import { readFileSync } from "node:fs";
import { RawWebSocket, wallMs } from "./raw_ws.mjs";

const [base, key, config, nArg, gateArg] = process.argv.slice(2);
const N = Number(nArg || 1000);
const GATE = gateArg || "gate";
const OPEN_TIMEOUT_MS = Number(process.env.OPEN_TIMEOUT_MS || 30000);
const RUN_TIMEOUT_MS = Number(process.env.RUN_TIMEOUT_MS || 60000);
const API = `${base}/api/v1/orchestrations`;
const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
// CPU time (ms) of the server process (SERVER_PID) from /proc, or null.
function serverCpuMs() {
  const pid = process.env.SERVER_PID;
  if (!pid) return null;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
  } catch { return null; }
}
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const problems = [];

const CLIENT = process.env.WS_CLIENT === "raw" ? "raw" : "builtin";
const WS = CLIENT === "raw" ? RawWebSocket : globalThis.WebSocket;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);

async function post(path, body) {
  const res = await fetch(`${API}${path}`, { method: "POST", headers: auth, body: JSON.stringify(body ?? {}) });
  const text = await res.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch { /* reported below */ }
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

async function main() {
  const started = await post(`/execute/${encodeURIComponent(config)}`, { input: { bench: "ws_fanout" } });
  if (started.status !== 202) throw new Error(`execute answered ${started.status}: ${started.text}`);
  const trace = started.doc.trace_id;
  const wsUrl = `${base.replace(/^http/, "ws")}/ws/executions/${trace}?api_key=${encodeURIComponent(key)}`;

  // Each subscriber keeps raw (arrival, text) pairs: parsing is left for
  // later so the arrival time is taken before any work of ours.
  const subs = [];
  let opened = 0, gated = 0;
  const tOpen0 = wallMs();
  for (let i = 0; i < N; i++) {
    const s = { arrivals: [], texts: [], open: false, gated: false, closeCode: null, error: null };
    const ws = new WS(wsUrl);
    s.ws = ws;
    ws.onopen = () => { s.open = true; opened++; };
    ws.onmessage = (e) => {
      s.arrivals.push(e.at ?? wallMs());
      s.texts.push(e.data);
      // Cheap substring test: the gate's step.approval event was replayed.
      if (!s.gated && typeof e.data === "string" && e.data.includes('"step.approval"')) { s.gated = true; gated++; }
    };
    ws.onerror = (e) => { s.error = String(e?.message || e?.error || "error"); };
    ws.onclose = (e) => { s.closeCode = e.code; if (!s.open) s.error = s.error || `closed before open (${e.code})`; };
    subs.push(s);
  }
  try {
    await until(() => opened === N || subs.some((s) => s.error), OPEN_TIMEOUT_MS, `${N} sockets to open`);
    const bad = subs.find((s) => s.error);
    if (bad) throw new Error(`a subscriber failed to open: ${bad.error}`);
    const tOpened = wallMs();
    await until(() => gated === N, OPEN_TIMEOUT_MS, "every subscriber to replay up to the gate");
    const tLive = wallMs();
    // The client's own garbage from opening and replaying 1,000 sockets
    // is collected now (node --expose-gc), not in the measured window.
    if (typeof globalThis.gc === "function") globalThis.gc();
    const cpu0 = cpuMs(), srv0 = serverCpuMs();

    const approve = await post(`/executions/${trace}/steps/${encodeURIComponent(GATE)}/approve`, { reason: "bench" });
    if (approve.status !== 200) throw new Error(`approve answered ${approve.status}: ${approve.text}`);
    await until(() => subs.every((s) => s.closeCode !== null), RUN_TIMEOUT_MS, "every subscriber to get the result");
    const tDone = wallMs();
    const srv1 = serverCpuMs();
    return analyse(subs, trace, { open_ms: tOpened - tOpen0, live_ms: tLive - tOpen0, run_ms: tDone - tLive,
      client_cpu_ms: cpuMs() - cpu0, server_cpu_ms: srv0 === null || srv1 === null ? null : srv1 - srv0 });
  } finally {
    for (const s of subs) if (s.closeCode === null) try { s.ws.close(1000); } catch { /* ignore */ }
  }
}

function analyse(subs, trace, t) {
  let gateSeq = null;
  const perSub = [];
  const delays = [];
  const perEvent = new Map(); // seq -> {type, step_id, status, delays}
  let allSeqs = null;
  for (const [i, s] of subs.entries()) {
    const seqs = [];
    let result = null;
    for (let k = 0; k < s.texts.length; k++) {
      let m;
      try { m = JSON.parse(s.texts[k]); } catch { problems.push(`subscriber ${i}: not JSON: ${String(s.texts[k]).slice(0, 80)}`); continue; }
      if (m.type === "result") { result = m; continue; }
      if (m.type === "error") { problems.push(`subscriber ${i}: error ${JSON.stringify(m.error)}`); continue; }
      if (typeof m.seq !== "number") { problems.push(`subscriber ${i}: event without seq: ${m.type}`); continue; }
      seqs.push(m.seq);
      if (m.type === "step.approval" && m.step_id === GATE) gateSeq = m.seq;
      if (gateSeq !== null && m.seq > gateSeq) {
        // an event's `at`: RFC 3339 with milliseconds (older servers: epoch seconds)
        const d = s.arrivals[k] - (typeof m.at === "string" ? Date.parse(m.at) : m.at * 1000);
        delays.push(d);
        let ev = perEvent.get(m.seq);
        if (!ev) perEvent.set(m.seq, ev = { type: m.type, step_id: m.step_id, status: m.status, delays: [] });
        ev.delays.push(d);
      }
    }
    // Every event, once, in order, from the first (seq = claims*1e6 + n).
    const first = seqs[0];
    for (let k = 0; k < seqs.length; k++) {
      if (seqs[k] !== first + k) { problems.push(`subscriber ${i}: seq ${seqs[k]} at position ${k} (gap, duplicate or reorder)`); break; }
    }
    if (first === undefined || first % 1e6 !== 1) problems.push(`subscriber ${i}: first event seq ${first}, not the first event`);
    if (!result) problems.push(`subscriber ${i}: no result message`);
    else if (result.execution?.status !== "completed") problems.push(`subscriber ${i}: result status ${result.execution?.status}`);
    if (s.closeCode !== 1000) problems.push(`subscriber ${i}: close code ${s.closeCode}`);
    const key = seqs.join(",");
    if (allSeqs === null) allSeqs = key;
    else if (key !== allSeqs) problems.push(`subscriber ${i}: got a different event list than subscriber 0`);
    perSub.push(seqs.length);
  }
  if (gateSeq === null) problems.push("no step.approval event for the gate step");
  delays.sort((a, b) => a - b);
  const events = [...perEvent.entries()].sort((a, b) => a[0] - b[0]).map(([seq, ev]) => {
    ev.delays.sort((a, b) => a - b);
    const label = [ev.type, ev.step_id, ev.status].filter((x) => x != null).join(":");
    return { seq, event: label, subscribers: ev.delays.length, first_ms: r3(ev.delays[0]),
      p50_ms: r3(pct(ev.delays, 50)), last_ms: r3(ev.delays[ev.delays.length - 1]) };
  });
  if (events.length < 3) problems.push(`only ${events.length} events after the gate`);
  for (const ev of events) {
    if (ev.subscribers !== subs.length) problems.push(`event ${ev.seq} reached ${ev.subscribers} of ${subs.length} subscribers`);
  }
  return {
    client: CLIENT,
    trace_id: trace,
    subscribers: subs.length,
    events_per_subscriber_min: Math.min(...perSub),
    events_per_subscriber_max: Math.max(...perSub),
    events_measured: events.length,
    pairs: delays.length,
    p50_ms: r3(pct(delays, 50)),
    p90_ms: r3(pct(delays, 90)),
    p99_ms: r3(pct(delays, 99)),
    max_ms: r3(delays[delays.length - 1]),
    min_ms: r3(delays[0]),
    open_ms: r3(t.open_ms),
    live_ms: r3(t.live_ms),
    run_ms: r3(t.run_ms),
    client_cpu_ms: r3(t.client_cpu_ms),
    server_cpu_ms: r3(t.server_cpu_ms),
    per_event: events,
  };
}

main().then((res) => {
  res.ok = problems.length === 0;
  res.problems = problems.slice(0, 20);
  res.problems_total = problems.length;
  out(res);
  process.exit(res.ok ? 0 : 1);
}, (err) => {
  out({ ok: false, problems: [String(err?.stack || err)], problems_total: 1 });
  process.exit(1);
});
