// Registry: the loaded strategies, agents and aggregation rules with their
// versions, the scripts that failed to load (file:line and the message),
// and for admins a reload button (POST /api/v1/registry/reload).
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import { errorBox, notify, writeButton, busy, section } from "../ui.js";

function table(kind, items) {
  if (!items.length) return h("p", { class: "muted" }, `No ${kind}.`);
  return h("table", { class: "table", "data-kind": kind },
    h("thead", {}, h("tr", {}, ["Name", "Version", "Declared", "File", "Description"].map((t) => h("th", {}, t)))),
    h("tbody", {}, items.map((x) => h("tr", { "data-name": x.name },
      h("td", {}, h("strong", {}, x.name)),
      h("td", {}, h("code", { title: x.version }, String(x.version || "").slice(0, 12))),
      h("td", {}, x.declared_version || "—"),
      h("td", { class: "small" }, x.file || "—"),
      h("td", { class: "small" }, x.description || "")))));
}

export async function render(el) {
  const body = h("div", { id: "registry-body" });
  const reload = writeButton("admin", "Reload scripts", async () => {
    await busy(reload, async () => {
      const r = await api.post("/api/v1/registry/reload");
      notify(`Reloaded: generation ${r.generation}, ${r.errors.length} load error${r.errors.length === 1 ? "" : "s"}`, r.errors.length ? "info" : "ok");
      await load();
    });
  }, { id: "registry-reload", class: "btn primary" });
  mount(el, h("div", { class: "page-head" }, h("h1", {}, "Registry"), h("span", { class: "spacer" }), reload), body);
  async function load() {
    let reg;
    try {
      reg = await api.get("/api/v1/registry");
    } catch (err) {
      mount(body, errorBox(err));
      return;
    }
    mount(body,
      h("p", { class: "muted" }, `Generation ${reg.generation}. Scripts reload on file changes, SIGHUP and the button.`),
      reg.errors.length ? section(`Load errors (${reg.errors.length})`, h("ul", { class: "load-errors", id: "load-errors" },
        reg.errors.map((e) => h("li", {}, h("code", {}, `${e.file}${e.line ? `:${e.line}` : ""}`), " ",
          e.kind ? h("span", { class: "tag" }, e.kind) : null, " ", h("span", { class: "msg" }, e.message))))) : null,
      section(`Strategies (${reg.strategies.length})`, table("strategies", reg.strategies)),
      section(`Agents (${reg.agents.length})`, table("agents", reg.agents)),
      section(`Aggregation rules (${reg.aggregators.length})`, table("aggregators", reg.aggregators)));
  }
  await load();
}
