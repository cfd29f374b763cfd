// editor.js: a JSON editor: a textarea with line numbers, and each error
// shown next to the line its path names (the server's 422 details, or a
// syntax error found here before anything is sent). The gutter and the
// notes lane scroll with the text.
import { h, mount, clear } from "./dom.js";
import { parse, lineOf, JsonSyntaxError } from "./jsonpos.js";

const LINE_PX = 20;

export function createEditor(text, opts = {}) {
  const area = h("textarea", { class: "code", spellcheck: "false", wrap: "off", id: opts.id || "editor",
    "aria-label": opts.label || "JSON", readonly: opts.readonly || false });
  area.value = text;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const notes = h("div", { class: "notes" });
  const gutterInner = h("div", { class: "gutter-inner" });
  const notesInner = h("div", { class: "notes-inner" });
  gutter.appendChild(gutterInner);
  notes.appendChild(notesInner);
  const el = h("div", { class: "editor" }, gutter, area, notes);
  let marks = new Map(); // line -> [messages]

  function renderGutter() {
    const n = area.value.split("\n").length;
    clear(gutterInner);
    for (let i = 1; i <= n; i++) {
      gutterInner.appendChild(h("div", { class: marks.has(i) ? "ln err" : "ln", "data-line": i }, String(i)));
    }
    clear(notesInner);
    gutterInner.style.height = notesInner.style.height = `${(n + 2) * LINE_PX}px`;
    for (const [line, msgs] of marks) {
      notesInner.appendChild(h("div", { class: "note", "data-line": line, style: `top:${(line - 1) * LINE_PX}px`,
        title: msgs.join("\n"),
        onclick: () => focusLine(line) }, msgs.map((m) => h("div", { class: "note-msg" }, m))));
    }
    sync();
  }
  function sync() {
    gutterInner.style.transform = `translateY(${-area.scrollTop}px)`;
    notesInner.style.transform = `translateY(${-area.scrollTop}px)`;
  }
  function focusLine(line) {
    const lines = area.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    area.scrollTop = Math.max(0, (line - 4) * LINE_PX);
    sync();
  }
  area.addEventListener("scroll", sync);
  // Tab indents (two spaces) instead of leaving the editor; Esc then Tab
  // still moves on, for keyboard users.
  let escaped = false;
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { escaped = true; return; }
    if (ev.key === "Tab" && !ev.shiftKey && !escaped && !area.readOnly) {
      ev.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
    escaped = false;
  });
  area.addEventListener("input", () => { if (marks.size) { marks = new Map(); } renderGutter(); });
  renderGutter();

  return {
    el,
    area,
    text: () => area.value,
    set(textValue) { area.value = textValue; marks = new Map(); renderGutter(); },
    // parse() -> value, or null after marking the syntax error
    parse() {
      try {
        return parse(area.value).value;
      } catch (e) {
        if (!(e instanceof JsonSyntaxError)) throw e;
        marks = new Map([[e.line, [`invalid JSON: ${e.message}`]]]);
        renderGutter();
        return null;
      }
    },
    // showErrors(details [, prefix]): each {path, message} at its line;
    // prefix is stripped from paths ("config." for an ad hoc execute).
    showErrors(details, prefix) {
      let lines;
      try { lines = parse(area.value).lines; } catch { lines = new Map(); }
      marks = new Map();
      const list = [];
      for (const d of details || []) {
        const path = prefix && d.path.startsWith(prefix) ? d.path.slice(prefix.length) : d.path;
        const line = lineOf(lines, path);
        const text = `${d.path}: ${d.message}`;
        if (!marks.has(line)) marks.set(line, []);
        marks.get(line).push(text);
        list.push({ line, text });
      }
      renderGutter();
      if (list.length) focusLine(list[0].line);
      return list;
    },
    clearErrors() { marks = new Map(); renderGutter(); },
    errorCount: () => marks.size,
  };
}

export function errorList(list) {
  if (!list.length) return null;
  return h("ul", { class: "error-list" }, list.map((x) => h("li", {}, h("span", { class: "muted" }, `line ${x.line}`), " ", x.text)));
}

export { mount };
