// ui.js: pieces every view uses: the notice banner, error boxes that show
// the server's code and message (never a stack), status badges, and
// write buttons that exist only for roles that may use them.
import { h, mount } from "./lib/dom.js";
import { ApiError, can } from "./api.js";

let noticeTimer = null;

// describe(err) -> {code, message, details} a person can read
export function describe(err) {
  if (err instanceof ApiError) return { code: err.code, message: err.message, details: err.details, status: err.status };
  return { code: "page_error", message: "Something went wrong on this page. Reload it; if it persists, report it.", details: [] };
}

// notify(errOrText, kind = "error" | "ok" | "info")
export function notify(what, kind) {
  const el = document.getElementById("notice");
  if (!el) return;
  clearTimeout(noticeTimer);
  let body;
  if (typeof what === "string") {
    body = [h("span", {}, what)];
    kind = kind || "info";
  } else {
    const d = describe(what);
    kind = "error";
    body = [h("strong", { class: "code" }, d.code), " ", h("span", { class: "msg" }, d.message),
      d.details && d.details.length ? h("ul", {}, d.details.map((x) => h("li", {}, h("code", {}, x.path), ": ", x.message))) : null];
  }
  el.className = `notice ${kind}`;
  mount(el, ...body, h("button", { type: "button", class: "link close", "aria-label": "Dismiss", onclick: () => { el.hidden = true; } }, "×"));
  el.hidden = false;
  if (kind !== "error") noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

export function clearNotice() {
  const el = document.getElementById("notice");
  if (el) el.hidden = true;
}

// errorBox(err) -> an inline element with the server's code and message
export function errorBox(err) {
  const d = describe(err);
  return h("div", { class: "error-box", role: "alert", "data-code": d.code },
    h("strong", { class: "code" }, d.code), " ", h("span", { class: "msg" }, d.message));
}

export function badge(status) {
  return h("span", { class: `badge st-${status || "unknown"}`, "data-status": status || "" }, status || "—");
}

// writeButton(action, label, onclick, attrs): a button shown only when the
// signed-in role may do `action` ("write", "execute", "control", "admin").
export function writeButton(action, label, onclick, attrs = {}) {
  if (!can(action)) return null;
  return h("button", { type: "button", class: "btn", "data-write": action, onclick, ...attrs }, label);
}

// busy(button, promiseFn): disables the button while the call runs and
// shows its failure.
export async function busy(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (err) {
    notify(err);
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

// navigate(hash): to a view, and again to the same one (to show new data).
export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function loading() {
  return h("p", { class: "muted loading" }, "Loading…");
}

export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}
