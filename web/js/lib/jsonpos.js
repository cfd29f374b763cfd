// jsonpos.js: JSON.parse that also says on which line each value is, so
// a validation error's path ("steps.steps[1].agent", the server's format)
// can be shown next to its line. parse(text) -> {value, lines} or throws
// JsonSyntaxError {message, line, column}.
export class JsonSyntaxError extends Error {
  constructor(message, line, column) {
    super(message);
    this.line = line;
    this.column = column;
  }
}

export function parse(text) {
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const lines = new Map();

  const fail = (msg) => { throw new JsonSyntaxError(`${msg} at line ${line}, column ${i - lineStart + 1}`, line, i - lineStart + 1); };
  const ws = () => {
    for (;;) {
      const c = text[i];
      if (c === "\n") { line++; i++; lineStart = i; } else if (c === " " || c === "\t" || c === "\r") i++;
      else break;
    }
  };
  const join = (base, key) => (base === "" ? key : `${base}.${key}`);

  function str() {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      else if (text[i] === "\n") fail("unterminated string");
      i++;
    }
    if (i >= text.length) fail("unterminated string");
    i++;
    try { return JSON.parse(text.slice(start, i)); } catch { return fail("invalid string"); }
  }

  function value(path) {
    ws();
    if (!lines.has(path || "(root)")) lines.set(path || "(root)", line);
    const c = text[i];
    if (c === "{") {
      i++;
      const out = {};
      ws();
      if (text[i] === "}") { i++; return out; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a \"key\"");
        const keyLine = line;
        const k = str();
        const p = join(path, k);
        lines.set(p, keyLine);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        out[k] = value(p);
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return out; }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const out = [];
      ws();
      if (text[i] === "]") { i++; return out; }
      for (;;) {
        out.push(value(`${path}[${out.length}]`));
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "]") { i++; return out; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    const m = /^(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) fail(i >= text.length ? "unexpected end of the document" : `unexpected '${c}'`);
    i += m[0].length;
    return JSON.parse(m[0]);
  }

  const v = value("");
  ws();
  if (i < text.length) fail("unexpected text after the document");
  return { value: v, lines };
}

// lineOf(lines, path) -> the line of path, or of its nearest ancestor that
// exists (a missing field is shown at its object), or 1.
export function lineOf(lines, path) {
  let p = path || "(root)";
  for (;;) {
    if (lines.has(p)) return lines.get(p);
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    if (cut <= 0) return lines.get("(root)") || 1;
    p = p.slice(0, cut);
  }
}
