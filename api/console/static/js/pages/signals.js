// Signals, filterable by symbol, strategy, status and time; "Load more" follows the API's cursor.
import { api, query } from "../api.js";
import { badge, clear, h, num, short, table, time } from "../dom.js";
import { showBanner } from "../ui.js";

const STATUSES = ["", "new", "planned", "approved", "rejected", "expired", "ordered", "filled", "closed"];

export function render(view, ctx) {
  const p = ctx.params;
  const form = h("form", { class: "filters", id: "signal-filters" },
    h("label", {}, "Symbol", h("input", { name: "symbol", value: p.get("symbol") || "", placeholder: "AAPL", autocapitalize: "characters" })),
    h("label", {}, "Strategy", h("input", { name: "strategy", value: p.get("strategy") || "" })),
    h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: s === (p.get("status") || "") }, s || "any")))),
    h("label", {}, "Since", h("input", { name: "since", type: "datetime-local", value: p.get("since") || "" })),
    h("button", { type: "submit" }, "Filter"));
  const out = h("div", { id: "signals" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Signals")), form, out, more);
  let cursor = null;
  let rows = [];

  const filters = () => {
    const data = new FormData(form);
    const since = data.get("since");
    return { symbol: data.get("symbol").trim().toUpperCase(), strategy: data.get("strategy").trim(), status: data.get("status"), since: since ? `${since}:00Z` : "" };
  };

  async function load(append) {
    try {
      const page = await api(`/v1/signals${query({ ...filters(), limit: 50, cursor: append ? cursor : null })}`);
      rows = append ? rows.concat(page.items) : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      clear(out).append(table([
        { label: "created", cell: (s) => time(s.created_time) },
        { label: "symbol", cell: (s) => h("a", { href: `#/charts?symbol=${encodeURIComponent(s.symbol)}` }, s.symbol) },
        { label: "strategy", cell: (s) => h("a", { href: `#/performance?strategy=${encodeURIComponent(s.strategy)}` }, s.strategy) },
        { label: "side", cell: (s) => badge(s.side, s.side === "BUY" ? "buy" : "sell") },
        { label: "confidence", cell: (s) => num(s.confidence) },
        { label: "entry / stop / target", cell: (s) => `${num(s.entry, 4)} / ${num(s.stop, 4)} / ${num(s.take_profit, 4)}` },
        { label: "status", cell: (s) => badge(s.status, `status-${s.status}`) },
        { label: "id", cell: (s) => short(s.signal_id) },
      ], rows, { empty: "No signal matches." }));
    } catch (error) { showBanner(error.message); }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  load(false);
}
