// A config: its graph, the JSON editor (create or edit; every 422 error
// next to its line), version history with a diff of any two versions,
// activate/deactivate, delete, and Run (input prefilled from the last
// run, then the live view).
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import * as fmt from "../lib/format.js";
import { draw } from "../lib/dag.js";
import { diff, canonical } from "../lib/diff.js";
import { createEditor, errorList } from "../lib/editor.js";
import { errorBox, notify, writeButton, busy, loading, section, badge, navigate } from "../ui.js";

const TEMPLATE = {
  name: "my-config",
  description: "What this orchestration does",
  strategy: "sequential",
  steps: {
    steps: [
      { id: "first", agent: "echo", params: { output: { hello: "world" } } },
      { id: "second", agent: "echo", dependencies: ["first"] },
    ],
    settings: {},
  },
};

const CFG = "/api/v1/orchestrations/configs";

// The editable document of a stored config (an empty list stored by
// PostgreSQL comes back as {}: shown as []).
function documentOf(c) {
  const steps = c.steps && Array.isArray(c.steps.steps)
    ? { ...c.steps, steps: c.steps.steps.map((st) => (st.dependencies && !Array.isArray(st.dependencies) && Object.keys(st.dependencies).length === 0 ? { ...st, dependencies: [] } : st)) }
    : c.steps;
  const doc = { name: c.name, description: c.description, strategy: c.strategy, steps, metadata: c.metadata };
  if (doc.description === undefined || doc.description === null) delete doc.description;
  if (!doc.metadata || Object.keys(doc.metadata).length === 0) delete doc.metadata;
  return doc;
}

function editorSection(c) {
  const editor = createEditor(JSON.stringify(c ? documentOf(c) : TEMPLATE, null, 2), { id: "config-editor", label: "config JSON" });
  const result = h("div", { class: "editor-result", id: "editor-result" });
  const save = writeButton("write", c ? "Save new version" : "Create", async () => {
    mount(result);
    const doc = editor.parse();
    if (doc === null) { mount(result, h("div", { class: "error-box", "data-code": "invalid_json" }, "The JSON is not valid: see the marked line.")); return; }
    await busy(save, async () => {
      try {
        const saved = c ? await api.put(`${CFG}/${api.enc(c.id)}`, doc) : await api.post(CFG, doc);
        notify(c ? `Saved ${saved.name} v${saved.version}` : `Created ${saved.name}`, "ok");
        navigate(`#/configs/${api.enc(saved.name)}?tab=${c ? "edit" : "graph"}`);
      } catch (err) {
        const list = err.details && err.details.length ? editor.showErrors(err.details) : [];
        mount(result, errorBox(err), errorList(list));
      }
    });
  }, { id: "save-config", class: "btn primary" });
  const readonly = !api.can("write");
  if (readonly) editor.area.readOnly = true;
  return h("div", {}, readonly ? h("p", { class: "muted" }, "Read only: your role cannot change configs.") : null,
    editor.el, h("div", { class: "actions" }, save), result);
}

// context(lines, n): the changed lines with n unchanged ones around each
// change; longer unchanged runs become {skip: count}.
function context(lines, n) {
  const keep = lines.map(() => false);
  lines.forEach((l, i) => {
    if (l.op === " ") return;
    for (let k = Math.max(0, i - n); k <= Math.min(lines.length - 1, i + n); k++) keep[k] = true;
  });
  const out = [];
  let skipped = 0;
  lines.forEach((l, i) => {
    if (keep[i]) {
      if (skipped) out.push({ skip: skipped });
      skipped = 0;
      out.push(l);
    } else skipped++;
  });
  if (skipped) out.push({ skip: skipped });
  return out;
}

async function versionsSection(c) {
  const body = h("div", {});
  const sel = (name, v) => h("select", { id: `version-${name}`, "aria-label": `version ${name}` },
    Array.from({ length: c.version }, (_, i) => c.version - i).map((n) => h("option", { value: n, selected: n === v }, `v${n}`)));
  const a = sel("a", Math.max(1, c.version - 1)), b = sel("b", c.version);
  const out = h("div", { id: "version-diff" });
  const cache = new Map();
  const version = async (n) => {
    if (!cache.has(n)) cache.set(n, await api.get(`${CFG}/${api.enc(c.id)}/versions/${n}`));
    return cache.get(n);
  };
  const compare = async () => {
    mount(out, loading());
    try {
      const [x, y] = await Promise.all([version(Number(a.value)), version(Number(b.value))]);
      const lines = diff(canonical(documentOf(x)), canonical(documentOf(y)));
      const changed = lines.filter((l) => l.op !== " ").length;
      mount(out,
        h("p", { class: "muted" }, `v${x.version} (${fmt.time(x.created_at)}${x.created_by ? `, ${x.created_by}` : ""}) → v${y.version} (${fmt.time(y.created_at)}${y.created_by ? `, ${y.created_by}` : ""}): ${changed} line${changed === 1 ? "" : "s"} changed`),
        h("pre", { class: "diff" }, context(lines, 3).map((l) => l.skip
          ? h("div", { class: "skip" }, `… ${l.skip} unchanged line${l.skip === 1 ? "" : "s"}`)
          : h("div", { class: l.op === "+" ? "add" : l.op === "-" ? "del" : "same" }, `${l.op} ${l.text}`))));
    } catch (err) {
      mount(out, errorBox(err));
    }
  };
  mount(body, h("div", { class: "filters" }, "Compare ", a, " with ", b,
    h("button", { type: "button", class: "btn", id: "compare", onclick: compare }, "Compare")), out);
  if (c.version > 1) await compare();
  else mount(out, h("p", { class: "muted" }, "Only one version so far."));
  return body;
}

async function runSection(c) {
  // The last run's input, from the server (the newest execution of this config).
  let input = {};
  try {
    const last = await api.get(`/api/v1/orchestrations/executions${api.qs({ config: c.name, limit: 1 })}`);
    if (last.items.length) {
      const rec = await api.get(`/api/v1/orchestrations/status/${api.enc(last.items[0].trace_id)}`);
      if (rec.input && typeof rec.input === "object") input = rec.input;
    }
  } catch { /* no history visible: start from {} */ }
  const editor = createEditor(JSON.stringify(input, null, 2), { id: "run-input", label: "execution input JSON" });
  const result = h("div", { class: "editor-result", id: "run-result" });
  const run = writeButton("execute", "Run", async () => {
    mount(result);
    const value = editor.parse();
    if (value === null) return;
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      mount(result, h("div", { class: "error-box", "data-code": "invalid_input" }, "The input must be a JSON object."));
      return;
    }
    await busy(run, async () => {
      try {
        const r = await api.post(`/api/v1/orchestrations/execute/${api.enc(c.id)}`, { input: value });
        location.hash = `#/executions/${r.trace_id}`;
      } catch (err) {
        const list = err.details && err.details.length ? editor.showErrors(err.details.map((d) => ({ ...d, path: d.path.replace(/^input\.?/, "") }))) : [];
        mount(result, errorBox(err), errorList(list));
      }
    });
  }, { id: "run", class: "btn primary" });
  if (!c.is_active) return h("p", { class: "muted" }, "This config is inactive: activate it to run it.");
  if (!run) return h("p", { class: "muted" }, "Your role cannot run configs.");
  return h("div", {}, h("p", { class: "muted" }, "Input (prefilled from the last run):"), editor.el, h("div", { class: "actions" }, run), result);
}

function graphSection(c) {
  const detail = h("pre", { class: "step-detail", id: "step-detail" }, "Select a step to see its definition.");
  const steps = (c.steps && c.steps.steps) || [];
  const g = draw(steps, { onSelect: (id) => { g.select(id); detail.textContent = fmt.json(steps.find((x) => x.id === id)); } });
  return h("div", {}, h("div", { class: "dag-wrap" }, g.el),
    h("p", { class: "muted small" }, "Arrows: dependencies. Dashed: fallback chains. Frames: consensus groups. “needs approval”: waits for a person."), detail);
}

export async function render(el, params, query) {
  if (!params.key) {
    if (!api.can("write")) { mount(el, section("New config", h("p", {}, "Your role cannot create configs."))); return; }
    mount(el, h("div", { class: "page-head" }, h("h1", {}, "New config")),
      section(null, h("p", { class: "muted" }, "Write the config as JSON (docs/config.md has every field). Errors are shown next to their line."), editorSection(null)));
    return;
  }
  mount(el, loading());
  let c;
  try {
    c = await api.get(`${CFG}/${api.enc(params.key)}`);
  } catch (err) {
    mount(el, h("div", { class: "page-head" }, h("h1", {}, params.key)), errorBox(err));
    return;
  }
  const tab = query.tab || "graph";
  const tabs = [["graph", "Graph"], ["edit", api.can("write") ? "Edit" : "JSON"], ["versions", `Versions (${c.version})`], ["run", "Run"]];
  const toggle = writeButton("write", c.is_active ? "Deactivate" : "Activate", async (ev) => {
    await busy(ev.target, async () => {
      const u = await api.patch(`${CFG}/${api.enc(c.id)}`, { is_active: !c.is_active });
      notify(`${u.name} is now ${u.is_active ? "active" : "inactive"}`, "ok");
      render(el, params, query);
    });
  }, { id: "toggle-active" });
  let armed = false;
  const remove = writeButton("write", "Delete", async (ev) => {
    if (!armed) {
      armed = true;
      ev.target.textContent = "Click again to delete";
      ev.target.classList.add("danger");
      return;
    }
    await busy(ev.target, async () => {
      await api.del(`${CFG}/${api.enc(c.id)}`);
      notify(`Deleted ${c.name}`, "ok");
      location.hash = "#/configs";
    });
  }, { id: "delete-config" });
  const body = h("div", { id: "config-tab" }, loading());
  mount(el,
    h("div", { class: "page-head" },
      h("h1", {}, c.name), badge(c.is_active ? "active" : "inactive"), h("span", { class: "tag" }, `v${c.version}`),
      h("span", { class: "tag" }, c.strategy), c.is_global ? h("span", { class: "tag" }, "global") : null,
      h("span", { class: "spacer" }),
      h("a", { class: "btn", href: `#/executions${api.qs({ config: c.name })}` }, "Executions"), toggle, remove),
    c.description ? h("p", { class: "muted" }, c.description) : null,
    h("nav", { class: "tabs" }, tabs.map(([k, t]) => h("a", { href: `#/configs/${api.enc(c.name)}?tab=${k}`, class: k === tab ? "active" : "", "data-tab": k }, t))),
    section(null, body));
  const content = tab === "edit" ? editorSection(c) : tab === "versions" ? await versionsSection(c)
    : tab === "run" ? await runSection(c) : graphSection(c);
  mount(body, content);
}
