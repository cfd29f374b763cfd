// Overview: the last hour (or a chosen window) from GET /api/v1/stats:
// executions by status per minute, step latency by agent, tokens and
// cost by config. Refreshed every 10 s while shown.
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import * as charts from "../lib/charts.js";
import * as fmt from "../lib/format.js";
import { errorBox, section, badge } from "../ui.js";

const WINDOWS = [[900, "15 minutes"], [3600, "1 hour"], [21600, "6 hours"], [86400, "24 hours"]];

export async function render(el, _params, query) {
  const win = Number(query.window) || 3600;
  const select = h("select", { id: "window", "aria-label": "window",
    onchange: () => { location.hash = `#/?window=${select.value}`; } },
    WINDOWS.map(([v, t]) => h("option", { value: v, selected: v === win }, t)));
  const body = h("div", { id: "overview-body" });
  mount(el, h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("label", {}, "Window ", select)), body);
  let stopped = false;
  async function load() {
    let st;
    try {
      st = await api.get(`/api/v1/stats${api.qs({ window: win })}`);
    } catch (err) {
      mount(body, errorBox(err));
      return;
    }
    if (stopped) return;
    const present = charts.STATUS_ORDER.filter((x) => st.executions.by_status[x]);
    const perMinute = win <= 3600 ? st.per_minute : bucket(st.per_minute, win / 60 / 60);
    mount(body,
      h("div", { class: "kpis" },
        h("div", { class: "kpi" }, h("span", { class: "kpi-n", id: "kpi-total" }, fmt.num(st.executions.total)), "executions"),
        ...present.map((x) => h("div", { class: "kpi" }, h("span", { class: "kpi-n" }, fmt.num(st.executions.by_status[x])), badge(x))),
        h("div", { class: "kpi" }, h("span", { class: "kpi-n" }, fmt.num(st.usage_by_config.reduce((a, c) => a + c.tokens, 0))), "tokens"),
        h("div", { class: "kpi" }, h("span", { class: "kpi-n" }, fmt.cost(st.usage_by_config.reduce((a, c) => a + c.cost, 0))), "cost")),
      section("Executions by status", charts.stacked(perMinute), charts.legend(present.length ? present : ["completed", "failed"])),
      section("Step latency by agent (p50 / p99)",
        st.step_latency.length ? charts.latency(st.step_latency) : h("p", { class: "muted" }, "No step finished in this window.")),
      section("Tokens and cost by config",
        st.usage_by_config.length
          ? charts.bars(st.usage_by_config, (r) => r.tokens, (r) => `${fmt.num(r.tokens)} tokens · ${fmt.cost(r.cost)} · ${r.executions} run${r.executions === 1 ? "" : "s"}`, "usage")
          : h("p", { class: "muted" }, "No execution in this window.")),
      h("p", { class: "muted small" }, `From ${fmt.time(st.since)} to ${fmt.time(st.until)}; numbers from the server's store.`));
  }
  await load();
  const timer = setInterval(load, 10000);
  return () => { stopped = true; clearInterval(timer); };
}

// bucket(points, k): k minutes a bar, for long windows
function bucket(points, k) {
  const out = [];
  for (let i = 0; i < points.length; i += k) {
    const by = {};
    for (const p of points.slice(i, i + k)) for (const [st, n] of Object.entries(p.by_status)) by[st] = (by[st] || 0) + n;
    out.push({ at: points[i].at, by_status: by });
  }
  return out;
}
