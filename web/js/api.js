// api.js: the REST client of the page. The key lives in sessionStorage
// (gone when the tab closes) and goes out as a bearer header; every
// failure becomes an ApiError carrying the server's own code, message and
// details. A 401 means the key was revoked or expired: the session ends
// and the page returns to sign-in.
const KEY = "chorus.key";
const WHO = "chorus.who";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export function apiKey() { return sessionStorage.getItem(KEY); }

export function principal() {
  try { return JSON.parse(sessionStorage.getItem(WHO) || "null"); } catch { return null; }
}

export function signedIn() { return principal() !== null; }

export function can(action) {
  const p = principal();
  return !!(p && p.can && p.can[action]);
}

export function saveSession(key, who) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
  sessionStorage.setItem(WHO, JSON.stringify(who));
}

export function endSession() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
}

// request(method, path, body, {key, signoutOn401 = true, headers}) -> decoded body
export async function request(method, path, body, opts = {}) {
  const headers = { accept: "application/json", ...(opts.headers || {}) };
  const key = opts.key !== undefined ? opts.key : apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "The server did not answer. Is chorus serve running?");
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const e = data && data.error;
    const err = e && typeof e.message === "string"
      ? new ApiError(res.status, e.code, e.message, e.details)
      : new ApiError(res.status, `http_${res.status}`, `The server answered ${res.status} ${res.statusText}`.trim());
    if (res.status === 401 && opts.signoutOn401 !== false) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body, opts) => request("POST", path, body, opts);
export const put = (path, body, opts) => request("PUT", path, body, opts);
export const patch = (path, body, opts) => request("PATCH", path, body, opts);
export const del = (path, opts) => request("DELETE", path, undefined, opts);

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

// wsURL(path) -> the ws:// URL of a WebSocket route, authenticated with
// ?api_key= (browsers cannot set headers on a WebSocket).
export function wsURL(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const key = apiKey();
  return `${proto}//${location.host}${path}${key ? `?api_key=${enc(key)}` : ""}`;
}
