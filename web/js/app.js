// app.js: the admin page's shell: sign-in state, the hash router
// (#/configs/triage?tab=versions), the header, and the view in <main>.
// Each view is a module with render(el, params, query) that may return a
// cleanup function (closing its WebSocket, stopping its timers).
import { h, mount } from "./lib/dom.js";
import * as api from "./api.js";
import { notify, clearNotice } from "./ui.js";

const ROUTES = [
  [/^\/?$/, "overview"],
  [/^\/signin$/, "signin"],
  [/^\/configs$/, "configs"],
  [/^\/configs\/new$/, "config", () => ({ key: null })],
  [/^\/configs\/([^/]+)$/, "config", (m) => ({ key: decodeURIComponent(m[1]) })],
  [/^\/executions$/, "executions"],
  [/^\/executions\/([^/]+)$/, "execution", (m) => ({ trace: decodeURIComponent(m[1]) })],
  [/^\/registry$/, "registry"],
  [/^\/api$/, "apidoc"],
];

let cleanup = null;
let generation = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, q] = raw.split("?");
  return { path, query: Object.fromEntries(new URLSearchParams(q || "")) };
}

export function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

function header() {
  const top = document.getElementById("top");
  const who = api.principal();
  top.hidden = !who;
  if (!who) return;
  mount(document.getElementById("who"),
    h("span", { class: "role", "data-role": who.role }, who.role), " ",
    who.user_id || "", who.tenant_id ? h("span", { class: "muted" }, ` @ ${who.tenant_id}`) : "");
  const { path } = parseHash();
  const section = path.split("/")[1] || "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    const n = a.dataset.nav;
    a.classList.toggle("active", n === section || (n === "api" && section === "api"));
  }
}

async function route() {
  const my = ++generation;
  if (cleanup) { try { cleanup(); } catch { /* a view's cleanup must not stop navigation */ } cleanup = null; }
  const { path, query } = parseHash();
  let name = "notfound";
  let params = {};
  for (const [re, n, fn] of ROUTES) {
    const m = path.match(re);
    if (m) { name = n; params = fn ? fn(m) : {}; break; }
  }
  if (name !== "signin" && !api.signedIn()) {
    sessionStorage.setItem("chorus.after", location.hash || "#/");
    location.hash = "#/signin";
    return;
  }
  header();
  const view = document.getElementById("view");
  view.dataset.view = name;
  if (name === "notfound") {
    mount(view, h("section", { class: "card" }, h("h1", {}, "Page not found"),
      h("p", {}, "Nothing here. "), h("a", { href: "#/" }, "Go to the overview")));
    return;
  }
  const mod = await import(`./views/${name}.js`);
  if (my !== generation) return;
  mount(view);
  try {
    const c = await mod.render(view, params, query);
    if (my !== generation) { if (typeof c === "function") c(); return; }
    cleanup = typeof c === "function" ? c : null;
  } catch (err) {
    if (my !== generation) return;
    notify(err);
  }
}

// A key the server no longer takes (revoked, expired): back to sign-in.
api.setUnauthorizedHandler((err) => {
  if (!api.signedIn()) return;
  api.endSession();
  sessionStorage.setItem("chorus.signin_reason", `${err.code}: ${err.message}. Sign in again with a valid key.`);
  sessionStorage.setItem("chorus.after", location.hash || "#/");
  location.hash = "#/signin";
});

// An error the page did not expect: a short message, never a stack.
window.addEventListener("unhandledrejection", (ev) => notify(ev.reason));

document.getElementById("signout").addEventListener("click", () => {
  api.endSession();
  clearNotice();
  sessionStorage.removeItem("chorus.after");
  go("#/signin");
});

window.addEventListener("hashchange", route);
route();
