// Configs: the list (search, active filter, pages) with a link to each
// and, for roles that may write, "New config".
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import * as fmt from "../lib/format.js";
import { errorBox, writeButton } from "../ui.js";

const PAGE = 25;

export async function render(el, _params, query) {
  const search = h("input", { type: "search", id: "config-search", placeholder: "Search name or description",
    value: query.search || "", "aria-label": "search configs" });
  const active = h("select", { id: "config-active", "aria-label": "active" },
    h("option", { value: "" }, "active and inactive"),
    h("option", { value: "true", selected: query.active === "true" }, "active only"),
    h("option", { value: "false", selected: query.active === "false" }, "inactive only"));
  const offset = Number(query.offset) || 0;
  const apply = (extra = {}) => {
    location.hash = `#/configs${api.qs({ search: search.value.trim(), active: active.value, ...extra })}`;
  };
  const form = h("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    search, active, h("button", { type: "submit", class: "btn" }, "Search"));
  active.addEventListener("change", () => apply());
  const list = h("div", { id: "config-list" });
  mount(el, h("div", { class: "page-head" }, h("h1", {}, "Configs"),
    writeButton("write", "New config", () => { location.hash = "#/configs/new"; }, { id: "new-config", class: "btn primary" })),
  form, list);
  let page;
  try {
    page = await api.get(`/api/v1/orchestrations/configs${api.qs({ search: query.search, active: query.active, limit: PAGE, offset })}`);
  } catch (err) {
    mount(list, errorBox(err));
    return;
  }
  if (page.items.length === 0) {
    mount(list, h("p", { class: "muted empty" }, query.search ? "No config matches." : "No config yet."));
    return;
  }
  mount(list,
    h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Name", "Strategy", "Steps", "Version", "Active", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((c) => h("tr", { "data-config": c.name },
        h("td", {}, h("a", { href: `#/configs/${api.enc(c.name)}` }, c.name), c.is_global ? h("span", { class: "tag" }, "global") : null,
          c.description ? h("div", { class: "muted small" }, c.description) : null),
        h("td", {}, c.strategy),
        h("td", {}, String(((c.steps && c.steps.steps) || []).length)),
        h("td", {}, `v${c.version}`),
        h("td", {}, c.is_active ? h("span", { class: "badge st-completed" }, "active") : h("span", { class: "badge st-cancelled" }, "inactive")),
        h("td", { title: fmt.time(c.updated_at) }, fmt.ago(c.updated_at)))))),
    pager(page, (o) => apply({ offset: o })));
}

export function pager(page, goTo) {
  const from = page.total === 0 ? 0 : page.offset + 1;
  const to = page.offset + page.items.length;
  return h("div", { class: "pager" },
    h("button", { type: "button", class: "btn", disabled: page.offset === 0, "data-page": "prev",
      onclick: () => goTo(Math.max(0, page.offset - page.limit)) }, "‹ Previous"),
    h("span", { class: "muted", id: "page-info" }, `${from}–${to} of ${fmt.num(page.total)}`),
    h("button", { type: "button", class: "btn", disabled: to >= page.total, "data-page": "next",
      onclick: () => goTo(page.offset + page.limit) }, "Next ›"));
}
