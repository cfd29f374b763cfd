// The live execution view: the config's graph coloured by step status, a
// timeline (a bar per step: start, duration, status colour, attempts and
// retries marked), a panel per step (input, output, error, tokens, cost,
// agent version, streamed text as it arrives) and the controls the state
// allows (pause, resume, cancel; approve and reject-with-reason on a step
// waiting for approval). Events come over /ws/executions/{trace}; a
// reload replays the history and goes on live.
import { h, s, mount, clear } from "../lib/dom.js";
import * as api from "../api.js";
import * as fmt from "../lib/format.js";
import { draw } from "../lib/dag.js";
import { follow } from "../lib/live.js";
import { errorBox, notify, badge, busy, loading, section } from "../ui.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STEP_TERMINAL = new Set(["completed", "failed", "skipped"]);
const EX = "/api/v1/orchestrations";

// times(o): o's times as epoch seconds (the arithmetic below needs numbers).
function times(o) {
  for (const k of ["created_at", "started_at", "finished_at"]) if (k in o) o[k] = fmt.epoch(o[k]);
  return o;
}

export async function render(el, params) {
  const trace = params.trace;
  mount(el, loading());
  let rec, graph;
  try {
    [rec, graph] = await Promise.all([
      api.get(`${EX}/status/${api.enc(trace)}`),
      api.get(`${EX}/executions/${api.enc(trace)}/graph`).catch(() => null),
    ]);
  } catch (err) {
    mount(el, h("div", { class: "page-head" }, h("h1", {}, "Execution")), errorBox(err));
    return;
  }

  // The view's state: the record (REST) with what events told since.
  const st = {
    rec: times(rec),
    steps: new Map(rec.steps.map((x) => [x.id, times({ ...x })])),
    retries: new Map(), // step id -> [{at, attempts, error}]
    streams: new Map(), // step id -> {attempt, text}
    selected: null,
    connection: "connecting",
  };
  const header = h("div", { class: "exec-head", id: "exec-head" });
  const controls = h("div", { class: "controls", id: "exec-controls" });
  const dagBox = h("div", { class: "dag-wrap", id: "exec-graph" });
  const timeline = h("div", { class: "timeline", id: "timeline" });
  const panels = h("div", { class: "step-panels", id: "step-panels" });
  const conn = h("span", { class: "conn", id: "connection" });
  mount(el,
    h("div", { class: "page-head" }, h("h1", {}, "Execution"), conn, h("span", { class: "spacer" }), controls),
    header,
    section("Graph", graph && !graph.as_run ? h("p", { class: "muted small" }, `The config as it ran is no longer kept; drawn from its current version (v${graph.version}).`) : null, dagBox),
    section("Timeline", timeline),
    section("Steps", panels));

  const dag = graph ? draw(graph.steps, { onSelect: (id) => select(id) }) : null;
  if (dag) mount(dagBox, dag.el); else mount(dagBox, h("p", { class: "muted" }, "The config of this execution is not available."));

  function select(id) {
    st.selected = id;
    if (dag) dag.select(id);
    const p = panels.querySelector(`[data-step="${CSS.escape(id)}"]`);
    if (p) { p.open = true; p.scrollIntoView({ block: "nearest" }); }
  }

  // ---- rendering ----
  function renderHeader() {
    const r = st.rec;
    const m = r.metrics || {};
    mount(header,
      h("dl", { class: "facts" },
        h("dt", {}, "Status"), h("dd", { id: "exec-status" }, badge(r.status)),
        h("dt", {}, "Config"), h("dd", {}, h("a", { href: `#/configs/${api.enc(r.config)}` }, r.config)),
        h("dt", {}, "Trace"), h("dd", {}, h("code", {}, r.trace_id)),
        h("dt", {}, "Started"), h("dd", {}, fmt.time(r.started_at || r.created_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmt.duration(m.latency_ms ?? (r.started_at ? (now() - r.started_at) * 1000 : null))),
        h("dt", {}, "Tokens"), h("dd", { id: "exec-tokens" }, fmt.num(m.tokens)),
        h("dt", {}, "Cost"), h("dd", { id: "exec-cost" }, fmt.cost(m.cost))),
      r.error ? h("div", { class: "error-box", "data-code": "execution_error" }, h("strong", {}, "error "), r.error) : null,
      r.output !== undefined && r.output !== null && TERMINAL.has(r.status)
        ? h("details", { class: "output", open: true }, h("summary", {}, "Output"), h("pre", { id: "exec-output" }, fmt.json(r.output))) : null);
  }

  function control(action, label, cls) {
    return h("button", { type: "button", class: `btn ${cls || ""}`, "data-action": action, onclick: async (ev) => {
      await busy(ev.target, async () => {
        await api.post(`${EX}/executions/${api.enc(trace)}/${action}`);
        notify(`${label}: done`, "ok");
      });
    } }, label);
  }

  function renderControls() {
    clear(controls);
    if (!api.can("control")) return;
    const status = st.rec.status;
    if (status === "running" || status === "pending") controls.appendChild(control("pause", "Pause"));
    // Paused by a step waiting for approval: approving resumes it, Resume
    // would not (it lifts only a pause asked for with Pause).
    const awaiting = [...st.steps.values()].some((x) => x.status === "paused");
    if (status === "paused" && !awaiting) controls.appendChild(control("resume", "Resume"));
    if (!TERMINAL.has(status)) controls.appendChild(control("cancel", "Cancel", "danger"));
  }

  function now() { return Date.now() / 1000; }

  function renderTimeline() {
    const r = st.rec;
    const steps = [...st.steps.values()];
    const t0 = r.started_at || r.created_at;
    const starts = steps.map((x) => x.started_at).filter(Boolean);
    const ends = steps.map((x) => x.finished_at || (x.started_at && !STEP_TERMINAL.has(x.status) ? now() : null)).filter(Boolean);
    const t1 = Math.max(r.finished_at || 0, ...ends, t0 + 0.001, ...(TERMINAL.has(r.status) ? [] : [now()]));
    const span = Math.max(0.001, t1 - Math.min(t0, ...starts));
    const base = Math.min(t0, ...starts);
    const W = 1040, L = 140, R = 230, rowH = 24;
    const H = steps.length * rowH + 26;
    const x = (t) => L + ((t - base) / span) * (W - L - R);
    const svg = s("svg", { class: "chart timeline-chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "timeline" });
    steps.forEach((step, i) => {
      const y = 4 + i * rowH;
      svg.appendChild(s("text", { x: L - 8, y: y + 14, class: "tick", "text-anchor": "end" }, step.id));
      if (step.started_at) {
        const end = step.finished_at || (STEP_TERMINAL.has(step.status) ? step.started_at : now());
        const bar = s("rect", { x: x(step.started_at), y: y + 3, width: Math.max(2, x(end) - x(step.started_at)), height: 14, rx: 3,
          class: `bar st-${step.status}`, "data-step": step.id, "data-status": step.status },
          s("title", {}, `${step.id}: ${step.status}, ${fmt.duration((end - step.started_at) * 1000)}, ${step.attempts} attempt${step.attempts === 1 ? "" : "s"}`));
        bar.addEventListener("click", () => select(step.id));
        svg.appendChild(bar);
        for (const rt of st.retries.get(step.id) || []) {
          svg.appendChild(s("line", { x1: x(rt.at), x2: x(rt.at), y1: y + 1, y2: y + 19, class: "retry-mark" },
            s("title", {}, `retry after attempt ${rt.attempts}: ${rt.error || ""}`)));
        }
      }
      const note = `${step.status}${step.attempts > 1 ? ` · ${step.attempts} attempts (${step.attempts - 1} ${step.attempts === 2 ? "retry" : "retries"})` : ""}`;
      svg.appendChild(s("text", { x: W - R + 8, y: y + 14, class: "tick" }, note));
    });
    svg.appendChild(s("text", { x: L, y: H - 4, class: "tick" }, "0"));
    svg.appendChild(s("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" }, fmt.duration(span * 1000)));
    mount(timeline, svg);
  }

  function kv(k, v) { return [h("dt", {}, k), h("dd", {}, v)]; }

  function stepPanel(step) {
    const stream = st.streams.get(step.id);
    const awaiting = step.status === "paused" && api.can("control");
    const reason = awaiting ? h("input", { type: "text", class: "reason", placeholder: "reason (optional)", "aria-label": `reason for ${step.id}` }) : null;
    const decide = (action, label, cls) => h("button", { type: "button", class: `btn ${cls || ""}`, "data-action": action, onclick: async (ev) => {
      await busy(ev.target, async () => {
        const body = action === "reject" && reason.value.trim() ? { reason: reason.value.trim() } : {};
        await api.post(`${EX}/executions/${api.enc(trace)}/steps/${api.enc(step.id)}/${action}`, body);
        notify(`${step.id}: ${action === "approve" ? "approved" : "rejected"}`, "ok");
      });
    } }, label);
    const open = st.selected === step.id || step.status === "running" || step.status === "paused" || !!step.error || (stream && !STEP_TERMINAL.has(step.status));
    return h("details", { class: `step-panel st-${step.status}`, "data-step": step.id, "data-status": step.status, open },
      h("summary", {}, h("strong", {}, step.name && step.name !== step.id ? `${step.name} (${step.id})` : step.id), " ", badge(step.status),
        h("span", { class: "muted" }, ` ${step.agent}${step.agent_version ? ` @ ${String(step.agent_version).slice(0, 12)}` : ""}`)),
      awaiting ? h("div", { class: "approval", "data-approval": step.id }, h("span", {}, "Waiting for approval: "),
        decide("approve", "Approve", "primary"), reason, decide("reject", "Reject", "danger")) : null,
      h("dl", { class: "facts" },
        kv("Attempts", `${step.attempts}${step.attempts > 1 ? ` (${step.attempts - 1} ${step.attempts === 2 ? "retry" : "retries"})` : ""}`),
        kv("Latency", fmt.duration(step.latency_ms)),
        kv("Tokens", fmt.num(step.tokens)), kv("Cost", fmt.cost(step.cost)),
        kv("Agent version", step.agent_version || "—"),
        step.approval ? kv("Approval", `${step.approval.approved ? "approved" : "rejected"}${step.approval.by ? ` by ${step.approval.by}` : ""}${step.approval.reason ? `: ${step.approval.reason}` : ""}`) : null),
      step.error ? h("div", { class: "error-box", "data-code": "step_error" }, step.error) : null,
      stream ? h("div", { class: "stream-box" }, h("div", { class: "muted small" }, `streamed (attempt ${stream.attempt})`),
        h("pre", { class: "stream", "data-stream": step.id }, stream.text)) : null,
      h("div", { class: "io" },
        h("div", {}, h("h4", {}, "Input"), step.input !== undefined && step.input !== null ? h("pre", {}, fmt.json(step.input)) : h("p", { class: "muted small" }, "not recorded (settings.keep_inputs: true records it)")),
        h("div", {}, h("h4", {}, "Output"), step.output !== undefined && step.output !== null ? h("pre", { "data-output": step.id }, fmt.json(step.output)) : h("p", { class: "muted small" }, STEP_TERMINAL.has(step.status) ? "none" : "not yet"))));
  }

  // Rebuilt panels keep what the user did: which are open, a reason
  // being typed.
  const userOpen = new Map();
  function renderPanels() {
    const reasons = new Map();
    for (const p of panels.querySelectorAll("details.step-panel")) {
      const input = p.querySelector("input.reason");
      if (input && input.value) reasons.set(p.dataset.step, { value: input.value, focused: document.activeElement === input });
    }
    mount(panels, [...st.steps.values()].map(stepPanel));
    for (const p of panels.querySelectorAll("details.step-panel")) {
      const id = p.dataset.step;
      if (userOpen.has(id)) p.open = userOpen.get(id);
      p.querySelector("summary").addEventListener("click", () => userOpen.set(id, !p.open));
      const r = reasons.get(id);
      const input = p.querySelector("input.reason");
      if (r && input) { input.value = r.value; if (r.focused) input.focus(); }
    }
  }

  function renderStatuses() {
    if (!dag) return;
    const map = {};
    for (const [id, x] of st.steps) map[id] = x.status;
    dag.update(map);
  }

  function renderAll() {
    renderHeader();
    renderControls();
    renderTimeline();
    renderPanels();
    renderStatuses();
    conn.textContent = st.connection === "live" ? "● live" : st.connection === "ended" ? "ended" : st.connection;
    conn.dataset.state = st.connection;
  }

  // Panels are rebuilt at most once a frame (deltas may come fast); a
  // stream box alone is updated in place.
  let frame = null;
  function later() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = null; renderAll(); });
  }

  // The record by REST, for what events do not carry (inputs, outputs,
  // tokens, cost): after a step ends, at most every 300 ms.
  let refreshTimer = null;
  function refresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        merge(await api.get(`${EX}/status/${api.enc(trace)}`));
      } catch (err) {
        notify(err);
      }
    }, 300);
  }

  const RANK = { pending: 0, paused: 1, running: 2, completed: 3, failed: 3, skipped: 3 };
  function merge(r) {
    // The record may be older than events already shown: keep an event's
    // status unless the record's is further along.
    const exStatus = TERMINAL.has(st.rec.status) && !TERMINAL.has(r.status) ? st.rec.status : r.status;
    st.rec = times({ ...r, status: exStatus });
    for (const x of r.steps) {
      const cur = st.steps.get(x.id);
      const keep = cur && (RANK[cur.status] ?? 0) > (RANK[x.status] ?? 0) ? cur.status : x.status;
      st.steps.set(x.id, times({ ...x, status: keep, attempts: Math.max(x.attempts || 0, (cur && cur.attempts) || 0) }));
    }
    later();
  }

  function onEvent(e) {
    e.at = fmt.epoch(e.at);
    const step = e.step_id ? st.steps.get(e.step_id) : null;
    switch (e.type) {
      case "execution.status":
        st.rec.status = e.status;
        if (e.error) st.rec.error = e.error;
        if (e.status === "running" && !st.rec.started_at) st.rec.started_at = e.at;
        if (TERMINAL.has(e.status)) { st.rec.finished_at = st.rec.finished_at || e.at; refresh(); }
        break;
      case "step.status":
        if (!step) break;
        step.status = e.status;
        if (e.attempts !== undefined) step.attempts = e.attempts;
        if (e.latency_ms !== undefined) step.latency_ms = e.latency_ms;
        if (e.error !== undefined) step.error = e.error;
        if (e.agent_version) step.agent_version = e.agent_version;
        if (e.status === "running" && !step.started_at) step.started_at = e.at;
        if (STEP_TERMINAL.has(e.status)) { step.finished_at = step.finished_at || e.at; refresh(); }
        break;
      case "step.retry":
        if (!step) break;
        if (!st.retries.has(e.step_id)) st.retries.set(e.step_id, []);
        st.retries.get(e.step_id).push({ at: e.at, attempts: e.attempts, error: e.error });
        break;
      case "step.approval":
        refresh();
        break;
      case "step.delta": {
        const cur = st.streams.get(e.step_id);
        if (!cur || (e.attempt || 1) > cur.attempt) st.streams.set(e.step_id, { attempt: e.attempt || 1, text: e.delta || "" });
        else cur.text += e.delta || "";
        const box = panels.querySelector(`[data-stream="${CSS.escape(e.step_id)}"]`);
        const now = st.streams.get(e.step_id);
        if (box && box.textContent.length <= now.text.length && now.text.startsWith(box.textContent)) {
          box.textContent = now.text;
          return;
        }
        break;
      }
      default:
        break;
    }
    later();
  }

  renderAll();
  const stop = follow(trace, {
    onEvent,
    onResult: (record) => { merge(record); st.connection = "ended"; later(); },
    onError: (e) => notify(new api.ApiError(0, e.code || "stream_error", e.message || "the event stream failed")),
    onState: (state) => { st.connection = state; later(); },
    check: () => api.get(`${EX}/status/${api.enc(trace)}`),
    onFail: (err) => notify(err),
  });
  // Running bars grow while nothing else happens.
  const ticker = setInterval(() => {
    if (!TERMINAL.has(st.rec.status)) { renderTimeline(); renderHeader(); }
  }, 500);
  return () => {
    stop();
    clearInterval(ticker);
    clearTimeout(refreshTimer);
    if (frame) cancelAnimationFrame(frame);
  };
}
