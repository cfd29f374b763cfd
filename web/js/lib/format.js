// format.js: how numbers and times read on the page.

// epoch(v) -> seconds since the epoch, from the API's times: numbers
// today, RFC 3339 strings accepted too (the API may move to them).
export function epoch(v) {
  if (v === undefined || v === null || v === "") return null;
  if (typeof v === "number") return v;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t / 1000;
}

export function time(v) {
  const e = epoch(v);
  if (e === null) return "—";
  const d = new Date(e * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function num(n) {
  if (n === undefined || n === null) return "—";
  return Number(n).toLocaleString("en-US");
}

export function cost(c) {
  if (c === undefined || c === null) return "—";
  const v = Number(c);
  return "$" + (v === 0 ? "0" : v < 0.01 ? v.toPrecision(2) : v.toFixed(v < 10 ? 4 : 2));
}

export function json(v) {
  return JSON.stringify(v === undefined ? null : v, null, 2);
}

export function ago(v) {
  const e = epoch(v);
  if (e === null) return "—";
  const s = Date.now() / 1000 - e;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
