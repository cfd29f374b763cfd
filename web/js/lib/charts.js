// charts.js: the overview's small SVG charts, drawn from the server's
// numbers (GET /api/v1/stats). Colours come from CSS classes (st-<status>).
import { s, h } from "./dom.js";
import { epoch } from "./format.js";

const STATUS_ORDER = ["completed", "failed", "cancelled", "running", "paused", "pending", "compensation"];

function label(at) {
  const d = new Date(epoch(at) * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// stacked(points) -> executions per minute, stacked by status
export function stacked(points) {
  const W = 1040, H = 200, L = 34, B = 22, T = 8;
  const max = Math.max(1, ...points.map((p) => Object.values(p.by_status).reduce((a, n) => a + n, 0)));
  const bw = (W - L) / Math.max(1, points.length);
  const svg = s("svg", { class: "chart stacked", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "executions per minute by status" });
  svg.appendChild(s("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }));
  svg.appendChild(s("text", { x: L - 4, y: T + 8, class: "tick", "text-anchor": "end" }, String(max)));
  svg.appendChild(s("text", { x: L - 4, y: H - B, class: "tick", "text-anchor": "end" }, "0"));
  points.forEach((p, i) => {
    let y = H - B;
    const x = L + i * bw;
    for (const st of STATUS_ORDER) {
      const n = p.by_status[st] || 0;
      if (!n) continue;
      const hh = (n / max) * (H - B - T);
      y -= hh;
      svg.appendChild(s("rect", { x: x + 0.5, y, width: Math.max(1, bw - 1), height: hh, class: `bar st-${st}` },
        s("title", {}, `${label(p.at)} · ${st}: ${n}`)));
    }
    if (i % 15 === 0 && i < points.length - 4) svg.appendChild(s("text", { x, y: H - 6, class: "tick" }, label(p.at)));
  });
  return svg;
}

export function legend(statuses) {
  return h("div", { class: "legend" }, statuses.map((st) => h("span", { class: "legend-item" },
    h("span", { class: `swatch st-${st}` }), st)));
}

export { STATUS_ORDER };

// latency(rows) -> per agent: a bar to p99, a mark at p50 (log scale)
export function latency(rows) {
  const W = 1040, rowH = 26, L = 150, R = 250;
  const H = Math.max(1, rows.length) * rowH + 20;
  const max = Math.max(1, ...rows.map((r) => r.p99_ms));
  const min = Math.max(0.01, Math.min(...rows.map((r) => r.p50_ms), max / 10));
  const scale = (v) => L + ((Math.log(Math.max(v, min)) - Math.log(min)) / (Math.log(max) - Math.log(min) || 1)) * (W - L - R);
  const svg = s("svg", { class: "chart latency", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "step latency p50 and p99 by agent" });
  rows.forEach((r, i) => {
    const y = 10 + i * rowH;
    svg.appendChild(s("text", { x: L - 8, y: y + 14, class: "tick", "text-anchor": "end" }, r.agent));
    svg.appendChild(s("rect", { x: L, y: y + 4, width: Math.max(2, scale(r.p99_ms) - L), height: 14, class: "bar p99" },
      s("title", {}, `${r.agent}: p99 ${r.p99_ms} ms`)));
    svg.appendChild(s("rect", { x: L, y: y + 4, width: Math.max(2, scale(r.p50_ms) - L), height: 14, class: "bar p50" },
      s("title", {}, `${r.agent}: p50 ${r.p50_ms} ms`)));
    svg.appendChild(s("text", { x: W - R + 8, y: y + 15, class: "tick" },
      `p50 ${fmt(r.p50_ms)} · p99 ${fmt(r.p99_ms)} · n=${r.count}`));
  });
  return svg;
}

function fmt(ms) {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  return ms < 1000 ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// bars(rows, value, text) -> horizontal bars of rows' value
export function bars(rows, value, text, cls) {
  const W = 1040, rowH = 24, L = 180, R = 250;
  const H = Math.max(1, rows.length) * rowH + 12;
  const max = Math.max(1e-9, ...rows.map(value));
  const svg = s("svg", { class: `chart bars ${cls || ""}`, viewBox: `0 0 ${W} ${H}`, role: "img" });
  rows.forEach((r, i) => {
    const y = 6 + i * rowH;
    svg.appendChild(s("text", { x: L - 8, y: y + 13, class: "tick", "text-anchor": "end" }, r.config));
    svg.appendChild(s("rect", { x: L, y: y + 2, width: Math.max(1, (value(r) / max) * (W - L - R)), height: 14, class: "bar" }));
    svg.appendChild(s("text", { x: W - R + 8, y: y + 13, class: "tick" }, text(r)));
  });
  return svg;
}
