// API: the OpenAPI document (/api/v1/openapi.json) as a page: every
// operation by tag, its parameters, body and responses with their
// schemas (references followed, drawn as nested fields).
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import { errorBox, section } from "../ui.js";

function resolve(doc, schema) {
  let s = schema || {};
  for (let i = 0; i < 10 && s.$ref; i++) {
    const parts = s.$ref.replace(/^#\//, "").split("/");
    s = parts.reduce((o, k) => (o ? o[k] : undefined), doc) || {};
  }
  return s;
}

function typeOf(doc, schema) {
  const name = schema && schema.$ref ? schema.$ref.split("/").pop() : null;
  const s = resolve(doc, schema);
  let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (s.enum) t = s.enum.map((x) => JSON.stringify(x)).join(" | ");
  if (s.oneOf) t = s.oneOf.map((x) => typeOf(doc, x)).join(" or ");
  if (s.allOf) t = s.allOf.map((x) => typeOf(doc, x)).join(" & ");
  if (s.type === "array") t = `array of ${typeOf(doc, s.items)}`;
  return name ? `${name}${t ? ` (${t})` : ""}` : t || "any";
}

// fields(doc, schema, depth): a schema's properties as a nested list
function fields(doc, schema, depth = 0, seen = new Set()) {
  const s = resolve(doc, schema);
  if (schema && schema.$ref) {
    if (seen.has(schema.$ref) || depth > 3) return null;
    seen = new Set(seen).add(schema.$ref);
  }
  let props = s.properties;
  let required = new Set(s.required || []);
  if (s.allOf) {
    props = {};
    for (const part of s.allOf) {
      const r = resolve(doc, part);
      Object.assign(props, r.properties || {});
      for (const q of r.required || []) required.add(q);
    }
  }
  if (s.type === "array" && s.items) return fields(doc, s.items, depth, seen);
  if (!props) return null;
  return h("ul", { class: "fields" }, Object.entries(props).map(([k, v]) => h("li", {},
    h("code", {}, k), required.has(k) ? h("span", { class: "req" }, " required") : null,
    h("span", { class: "muted" }, ` ${typeOf(doc, v)}`),
    resolve(doc, v).description ? h("span", { class: "small" }, ` — ${resolve(doc, v).description}`) : null,
    fields(doc, v, depth + 1, seen))));
}

function operation(doc, path, method, op) {
  const params = op.parameters || [];
  const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  return h("details", { class: "op", "data-op": `${method.toUpperCase()} ${path}` },
    h("summary", {}, h("span", { class: `method m-${method}` }, method.toUpperCase()), " ", h("code", { class: "path" }, path), " ",
      h("span", { class: "muted" }, op.summary || ""), op.security && op.security.length === 0 ? h("span", { class: "tag" }, "public") : null),
    op.description ? h("p", { class: "desc" }, op.description) : null,
    params.length ? h("div", {}, h("h4", {}, "Parameters"), h("table", { class: "table small" },
      h("tbody", {}, params.map((p) => h("tr", {}, h("td", {}, h("code", {}, p.name)), h("td", {}, p.in),
        h("td", {}, p.required ? "required" : "optional"), h("td", {}, typeOf(doc, p.schema)), h("td", {}, p.description || "")))))) : null,
    body ? h("div", {}, h("h4", {}, `Body${op.requestBody.required ? "" : " (optional)"}: ${typeOf(doc, body.schema)}`), fields(doc, body.schema)) : null,
    h("h4", {}, "Responses"),
    h("ul", { class: "responses" }, Object.entries(op.responses || {}).map(([code, r]) => {
      const rr = resolve(doc, r);
      const c = rr.content && (rr.content["application/json"] || rr.content["text/plain"]);
      return h("li", {}, h("code", { class: `code-${code[0]}xx` }, code), ` ${rr.description || ""}`,
        c ? h("span", { class: "muted" }, ` — ${typeOf(doc, c.schema)}`) : null);
    })));
}

export async function render(el) {
  let doc;
  try {
    doc = await api.get("/api/v1/openapi.json");
  } catch (err) {
    mount(el, errorBox(err));
    return;
  }
  const byTag = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  mount(el,
    h("div", { class: "page-head" }, h("h1", {}, `${doc.info.title} ${doc.info.version}`),
      h("a", { class: "btn", href: "/api/v1/openapi.json", target: "_blank", rel: "noopener" }, "openapi.json")),
    section(null, h("pre", { class: "prose" }, doc.info.description)),
    ...[...byTag.entries()].map(([tag, ops]) => section(tag, ops.map(([p, m, o]) => operation(doc, p, m, o)))),
    section("Schemas", Object.entries(doc.components.schemas).map(([name, sch]) => h("details", { class: "op", "data-schema": name },
      h("summary", {}, h("code", {}, name), " ", h("span", { class: "muted" }, typeOf(doc, sch))),
      fields(doc, { $ref: `#/components/schemas/${name}` }) || h("p", { class: "muted" }, typeOf(doc, sch))))));
}
