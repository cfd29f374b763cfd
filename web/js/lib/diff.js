// diff.js: a line diff (longest common subsequence) of two texts, for
// comparing config versions. diff(a, b) -> [{op: " " | "-" | "+", text}]
export function diff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  // Trim the common head and tail: versions differ in a few lines.
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail), ys = y.slice(head, y.length - tail);
  const n = xs.length, m = ys.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      L[i][j] = xs[i] === ys[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    }
  }
  const out = x.slice(0, head).map((text) => ({ op: " ", text }));
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (xs[i] === ys[j]) { out.push({ op: " ", text: xs[i] }); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) out.push({ op: "-", text: xs[i++] });
    else out.push({ op: "+", text: ys[j++] });
  }
  while (i < n) out.push({ op: "-", text: xs[i++] });
  while (j < m) out.push({ op: "+", text: ys[j++] });
  for (const text of x.slice(x.length - tail)) out.push({ op: " ", text });
  return out;
}

// canonical(v): JSON with keys sorted, two-space indented, so equal
// documents give equal text.
export function canonical(v) {
  const sort = (x) => {
    if (Array.isArray(x)) return x.map(sort);
    if (x && typeof x === "object") {
      const o = {};
      for (const k of Object.keys(x).sort()) o[k] = sort(x[k]);
      return o;
    }
    return x;
  };
  return JSON.stringify(sort(v), null, 2);
}
