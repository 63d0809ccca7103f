// Tiny DOM helpers: build elements without innerHTML (every value is text, never markup).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function time(value) {
  if (!value) return "—";
  const d = new Date(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function num(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function short(id) { return id ? id.slice(0, 8) : "—"; }

// A responsive table: on narrow screens each row becomes a card, labelled by data-label.
export function table(columns, rows, { empty = "Nothing to show.", rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
        columns.map((c) => h("td", { "data-label": c.label, class: c.class ? c.class(row) : undefined }, c.cell(row))))))));
}

export function badge(text, kind = "") { return h("span", { class: `badge ${kind}` }, text); }

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function updated(el) {
  el.textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
}
