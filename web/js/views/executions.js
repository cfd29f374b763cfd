// Executions: newest first, filtered by config, status, time range and
// (admins) user, paged, with the tokens and cost of everything that
// matches. Refreshed every 5 s while on the first page.
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import * as fmt from "../lib/format.js";
import { errorBox, badge } from "../ui.js";
import { pager } from "./configs.js";

const PAGE = 25;
const STATUSES = ["pending", "running", "paused", "compensation", "completed", "failed", "cancelled"];

// datetime-local <-> RFC 3339 (the browser's local time zone)
const toLocal = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
};
const fromLocal = (v) => (v ? new Date(v).toISOString() : "");

export async function render(el, _params, query) {
  const admin = api.can("admin");
  const config = h("input", { type: "text", id: "filter-config", placeholder: "config name", value: query.config || "", "aria-label": "config" });
  const status = h("select", { id: "filter-status", "aria-label": "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.status === s }, s)));
  const since = h("input", { type: "datetime-local", id: "filter-since", value: toLocal(query.since), "aria-label": "since" });
  const until = h("input", { type: "datetime-local", id: "filter-until", value: toLocal(query.until), "aria-label": "until" });
  const user = admin ? h("input", { type: "text", id: "filter-user", placeholder: "user id", value: query.user_id || "", "aria-label": "user" }) : null;
  const apply = (extra = {}) => {
    location.hash = `#/executions${api.qs({ config: config.value.trim(), status: status.value, since: fromLocal(since.value),
      until: fromLocal(until.value), user_id: user ? user.value.trim() : undefined, ...extra })}`;
  };
  const form = h("form", { class: "filters", id: "execution-filters", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    config, status, h("label", {}, "from ", since), h("label", {}, "to ", until), user,
    h("button", { type: "submit", class: "btn" }, "Filter"),
    h("a", { class: "btn link", href: "#/executions" }, "Clear"));
  const body = h("div", { id: "execution-list" });
  mount(el, h("div", { class: "page-head" }, h("h1", {}, "Executions")), form, body);
  const offset = Number(query.offset) || 0;
  let stopped = false;
  async function load() {
    let page;
    try {
      page = await api.get(`/api/v1/orchestrations/executions${api.qs({ config: query.config, status: query.status,
        since: query.since, until: query.until, user_id: admin ? query.user_id : undefined, limit: PAGE, offset })}`);
    } catch (err) {
      if (!stopped) mount(body, errorBox(err));
      return;
    }
    if (stopped) return;
    mount(body,
      h("div", { class: "totals", id: "execution-totals" },
        h("span", {}, h("strong", {}, fmt.num(page.total)), " executions"),
        h("span", {}, h("strong", {}, fmt.num(page.totals.tokens)), " tokens"),
        h("span", {}, h("strong", {}, fmt.cost(page.totals.cost)), " cost")),
      page.items.length === 0 ? h("p", { class: "muted empty" }, "No execution matches.") :
        h("table", { class: "table" },
          h("thead", {}, h("tr", {}, ["Started", "Config", "Status", "Duration", "Tokens", "Cost", admin ? "User" : null].filter(Boolean).map((t) => h("th", {}, t)))),
          h("tbody", {}, page.items.map((e) => h("tr", { "data-trace": e.trace_id },
            h("td", {}, h("a", { href: `#/executions/${e.trace_id}` }, fmt.time(e.created_at))),
            h("td", {}, e.config),
            h("td", {}, badge(e.status), e.error ? h("div", { class: "muted small clip", title: e.error }, e.error) : null),
            h("td", {}, fmt.duration(e.metrics && e.metrics.latency_ms)),
            h("td", {}, fmt.num(e.metrics && e.metrics.tokens)),
            h("td", {}, fmt.cost(e.metrics && e.metrics.cost)),
            admin ? h("td", {}, e.user_id || "—") : null)))),
      pager(page, (o) => apply({ offset: o })));
  }
  await load();
  const timer = offset === 0 ? setInterval(load, 5000) : null;
  return () => { stopped = true; if (timer) clearInterval(timer); };
}
