// The sign-in view: an API key, checked with GET /api/v1/whoami before it
// is kept (sessionStorage: the tab's life). A server started with
// --no-auth needs no key: the page signs in by itself.
import { h, mount } from "../lib/dom.js";
import * as api from "../api.js";
import { errorBox, clearNotice } from "../ui.js";

function after() {
  const to = sessionStorage.getItem("chorus.after");
  sessionStorage.removeItem("chorus.after");
  location.hash = to && to !== "#/signin" ? to : "#/";
}

export async function render(el) {
  document.getElementById("top").hidden = true;
  const reason = sessionStorage.getItem("chorus.signin_reason");
  sessionStorage.removeItem("chorus.signin_reason");
  if (!reason) {
    // --no-auth: the server answers without a key.
    try {
      const who = await api.get("/api/v1/whoami", { key: null, signoutOn401: false });
      api.saveSession(null, who);
      return after();
    } catch { /* a key is needed: show the form */ }
  }
  const input = h("input", { type: "password", id: "api-key", name: "api_key", autocomplete: "off",
    placeholder: "chk_…", required: true, spellcheck: "false", "aria-label": "API key" });
  const status = h("div", { class: "signin-status" },
    reason ? h("div", { class: "error-box", role: "alert", "data-code": "session_ended" }, reason) : null);
  const button = h("button", { type: "submit", class: "btn primary" }, "Sign in");
  const form = h("form", { class: "signin card", id: "signin-form" },
    h("h1", {}, "Chorus"),
    h("p", { class: "muted" }, "Sign in with an API key (",
      h("code", {}, "chorus keys create --role viewer|operator|admin"), ", or the admin key ",
      h("code", {}, "chorus serve"), " printed)."),
    h("label", { for: "api-key" }, "API key"), input, status, button);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearNotice();
    const key = input.value.trim();
    mount(status);
    if (!/^chk_[0-9a-fA-F]{64}$/.test(key)) {
      mount(status, h("div", { class: "error-box", role: "alert", "data-code": "invalid_key" },
        "An API key is chk_ followed by 64 hexadecimal digits."));
      return;
    }
    button.disabled = true;
    try {
      const who = await api.get("/api/v1/whoami", { key, signoutOn401: false });
      api.saveSession(key, who);
      after();
    } catch (err) {
      mount(status, errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  mount(el, h("div", { class: "signin-wrap" }, form));
  input.focus();
}
