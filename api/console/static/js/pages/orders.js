// Orders, filterable by symbol, status and run; refreshed every 5 s; a row opens the order's trail.
import { api, query } from "../api.js";
import { badge, clear, h, num, short, table, time, updated } from "../dom.js";
import { poll } from "../ui.js";

const STATUSES = ["", "pending_submit", "submitted", "acknowledged", "partially_filled", "filled", "cancelled", "rejected", "error"];
const POLL_MS = 5000;

export function render(view, ctx) {
  const p = ctx.params;
  const form = h("form", { class: "filters", id: "order-filters" },
    h("label", {}, "Symbol", h("input", { name: "symbol", value: p.get("symbol") || "", placeholder: "AAPL" })),
    h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: s === (p.get("status") || "") }, s || "any")))),
    h("label", {}, "Run", h("input", { name: "run_id", value: p.get("run_id") || "", placeholder: "run id" })),
    h("button", { type: "submit" }, "Filter"));
  const stamp = h("span", { class: "muted small", id: "orders-updated" });
  const out = h("div", { id: "orders" });
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Orders"), stamp), form, out);

  const filters = () => {
    const data = new FormData(form);
    return { symbol: data.get("symbol").trim().toUpperCase(), status: data.get("status"), run_id: data.get("run_id").trim() };
  };
  async function refresh() {
    const page = await api(`/v1/orders${query({ ...filters(), limit: 100 })}`);
    clear(out).append(table([
      { label: "created", cell: (o) => time(o.created_time) },
      { label: "order", cell: (o) => h("a", { href: `#/orders/${o.order_id}`, class: "order-link" }, short(o.order_id)) },
      { label: "symbol", cell: (o) => o.symbol },
      { label: "side", cell: (o) => badge(o.side, o.side === "BUY" ? "buy" : "sell") },
      { label: "qty", cell: (o) => num(o.quantity, 4) },
      { label: "type", cell: (o) => `${o.order_type}${o.limit_price != null ? ` @ ${num(o.limit_price, 4)}` : ""}` },
      { label: "risk", cell: (o) => badge(o.risk, o.risk === "approved" ? "ok" : o.risk === "rejected" ? "bad" : "") },
      { label: "status", cell: (o) => (o.status ? badge(o.status, `status-${o.status}`) : "—") },
      { label: "filled", cell: (o) => `${num(o.filled_quantity, 4)}${o.avg_fill_price != null ? ` @ ${num(o.avg_fill_price, 4)}` : ""}` },
    ], page.items, { empty: "No order matches.", rowAttrs: (o) => ({ dataset: { orderId: o.order_id, status: o.status || "" } }) }));
    updated(stamp);
  }
  const stop = poll(refresh, POLL_MS);
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  return stop;
}
