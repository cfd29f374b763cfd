// dag.js: a config's steps as a layered graph (SVG). Columns are layers
// (a step sits one column right of its deepest dependency), fallback
// chains hang under the step they stand in for (dashed), consensus groups
// are framed together, approval steps are marked. On the execution page
// the same picture is coloured by step status: graph.update({id: status}).
import { s } from "./dom.js";

// A list field as stored: PostgreSQL's JSON comes back with an empty
// list as {} (the server's JSON library cannot tell them apart).
const list = (x) => (Array.isArray(x) ? x : []);

const W = 168, H = 50, GX = 64, GY = 22, PAD = 24;

function layout(steps) {
  const byId = new Map(steps.map((st, i) => [st.id, { st, i }]));
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0; // a cycle (refused by validation): draw, do not hang
    seen.add(id);
    const n = byId.get(id);
    let d = 0;
    for (const dep of list(n && n.st.dependencies)) {
      if (byId.has(dep)) d = Math.max(d, depth(dep, seen) + 1);
    }
    layer.set(id, d);
    return d;
  };
  const primaries = steps.filter((st) => !st.is_fallback);
  primaries.forEach((st) => depth(st.id));
  // fallback chains: the steps whose fallback_for is X, in declaration order
  const chain = new Map();
  for (const st of steps) {
    if (st.is_fallback && st.fallback_for) {
      if (!chain.has(st.fallback_for)) chain.set(st.fallback_for, []);
      chain.get(st.fallback_for).push(st);
    }
  }
  const columns = [];
  for (const st of primaries) {
    const l = layer.get(st.id);
    (columns[l] = columns[l] || []).push(st);
  }
  // order: consensus groups together, then by where the dependencies sit
  const row = new Map();
  const pos = [];
  columns.forEach((col, l) => {
    const bary = (st) => {
      const ds = list(st.dependencies).filter((d) => row.has(d));
      return ds.length ? ds.reduce((a, d) => a + row.get(d), 0) / ds.length : byId.get(st.id).i;
    };
    const key = (st) => (st.consensus_group ? Math.min(...col.filter((x) => x.consensus_group === st.consensus_group).map(bary)) : bary(st));
    col.sort((a, b) => key(a) - key(b) || (a.consensus_group || "").localeCompare(b.consensus_group || "") || byId.get(a.id).i - byId.get(b.id).i);
    let r = 0;
    const place = (st, depthIn) => {
      row.set(st.id, r);
      pos.push({ st, col: l, row: r, indent: depthIn });
      r++;
      for (const f of chain.get(st.id) || []) place(f, depthIn + 1);
    };
    col.forEach((st) => place(st, 0));
  });
  // fallbacks whose target is missing still get drawn, in a last column
  const placed = new Set(pos.map((p) => p.st.id));
  const orphans = steps.filter((st) => !placed.has(st.id));
  orphans.forEach((st, k) => pos.push({ st, col: columns.length, row: k, indent: 0 }));
  return pos;
}

// draw(steps, {onSelect}) -> {el (svg), update(statuses), select(id)}
export function draw(steps, opts = {}) {
  const pos = layout(steps);
  const at = new Map();
  let maxX = 0, maxY = 0;
  for (const p of pos) {
    const x = PAD + p.col * (W + GX) + p.indent * 14;
    const y = PAD + 18 + p.row * (H + GY);
    at.set(p.st.id, { x, y, p });
    maxX = Math.max(maxX, x + W);
    maxY = Math.max(maxY, y + H);
  }
  const width = maxX + PAD, height = maxY + PAD;
  const svg = s("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `graph of ${steps.length} steps` });
  svg.appendChild(s("defs", {},
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  // consensus groups: a frame per group and column
  const groups = new Map();
  for (const p of pos) {
    const g = p.st.consensus_group;
    if (!g) continue;
    const k = `${g}\u0000${p.col}`;
    const a = at.get(p.st.id);
    const b = groups.get(k) || { g, x1: Infinity, y1: Infinity, x2: -Infinity, y2: -Infinity };
    b.x1 = Math.min(b.x1, a.x); b.y1 = Math.min(b.y1, a.y); b.x2 = Math.max(b.x2, a.x + W); b.y2 = Math.max(b.y2, a.y + H);
    groups.set(k, b);
  }
  for (const b of groups.values()) {
    svg.appendChild(s("g", { class: "group", "data-group": b.g },
      s("rect", { x: b.x1 - 8, y: b.y1 - 20, width: b.x2 - b.x1 + 16, height: b.y2 - b.y1 + 28, rx: 10 }),
      s("text", { x: b.x1 - 2, y: b.y1 - 7, class: "group-label" }, `consensus: ${b.g}`)));
  }
  // edges: dependencies, then fallback links
  const edges = s("g", { class: "edges" });
  for (const st of steps) {
    const to = at.get(st.id);
    for (const d of list(st.dependencies)) {
      const from = at.get(d);
      if (!from || !to) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      const mx = (x1 + x2) / 2;
      edges.appendChild(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`,
        "marker-end": "url(#arrow)", "data-from": d, "data-to": st.id }));
    }
    if (st.is_fallback && st.fallback_for && at.get(st.fallback_for) && to) {
      const from = at.get(st.fallback_for);
      edges.appendChild(s("path", { class: "edge fallback", d: `M${from.x + 10},${from.y + H} L${from.x + 10},${to.y + H / 2} L${to.x - 2},${to.y + H / 2}`,
        "marker-end": "url(#arrow)", "data-from": st.fallback_for, "data-to": st.id }));
    }
  }
  svg.appendChild(edges);
  const nodes = new Map();
  for (const st of steps) {
    const a = at.get(st.id);
    if (!a) continue;
    const title = st.name && st.name !== st.id ? `${st.name} (${st.id})` : st.id;
    const label = title.length > 24 ? `${title.slice(0, 23)}…` : title;
    const marks = [st.approval ? "approval" : null, st.is_fallback ? `fallback for ${st.fallback_for}` : null,
      st.on_failure && st.on_failure !== "abort" ? `on failure: ${st.on_failure}` : null].filter(Boolean);
    const g = s("g", { class: `node st-pending${st.is_fallback ? " is-fallback" : ""}${st.approval ? " needs-approval" : ""}`,
      "data-step": st.id, "data-status": "pending", transform: `translate(${a.x},${a.y})`, tabindex: 0, role: "button" },
      s("title", {}, `${title}\nagent: ${st.agent}${marks.length ? "\n" + marks.join("\n") : ""}`),
      s("rect", { width: W, height: H, rx: 8 }),
      s("text", { x: 10, y: 20, class: "node-title" }, label),
      s("text", { x: 10, y: 38, class: "node-agent" }, `${st.agent}${st.approval ? " · needs approval" : ""}`));
    if (opts.onSelect) {
      g.addEventListener("click", () => opts.onSelect(st.id));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") opts.onSelect(st.id); });
    }
    nodes.set(st.id, g);
    svg.appendChild(g);
  }
  return {
    el: svg,
    update(statuses) {
      for (const [id, st] of Object.entries(statuses)) {
        const g = nodes.get(id);
        if (!g || g.dataset.status === st) continue;
        g.classList.remove(`st-${g.dataset.status}`);
        g.classList.add(`st-${st}`);
        g.dataset.status = st;
      }
    },
    select(id) {
      for (const [k, g] of nodes) g.classList.toggle("selected", k === id);
    },
  };
}
