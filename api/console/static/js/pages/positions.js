// Positions from IB with their mark, P&L and working protective orders; traders can cancel every working order of a
// symbol from here (after a confirmation with a reason).
import { api } from "../api.js";
import { badge, clear, h, num, section, short, table, time, updated } from "../dom.js";
import { cancelAll } from "../order-actions.js";
import { poll } from "../ui.js";

export function render(view, ctx) {
  const stamp = h("span", { class: "muted small", id: "positions-updated" });
  const out = h("div", { id: "positions" });
  const trader = ctx.can("trader");
  const accountWide = trader
    ? h("p", {}, h("button", { type: "button", class: "danger", id: "cancel-all-account", onclick: () => cancelAll("account") },
        "Cancel all working orders (account)"))
    : h("p", { class: "muted", id: "positions-readonly" }, "Only a trader can cancel orders.");
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Positions"), stamp), out, section("Orders", accountWide));

  async function refresh() {
    const list = await api("/v1/positions");
    const columns = [
      { label: "symbol", cell: (p) => p.symbol },
      { label: "qty", cell: (p) => badge(num(p.quantity, 4), p.quantity >= 0 ? "buy" : "sell") },
      { label: "avg cost", cell: (p) => num(p.avg_cost, 4) },
      { label: "mark", cell: (p) => `${num(p.market_price, 4)}${p.mark_source ? ` (${p.mark_source})` : ""}` },
      { label: "unrealized", cell: (p) => num(p.unrealized_pnl) },
      { label: "protective", cell: (p) => p.protective_orders.map((o) => h("div", {},
          h("a", { href: `#/orders/${o.order_id}` }, short(o.order_id)), ` ${o.leg} @ ${num(o.price, 4)}`)) },
      { label: "as of", cell: (p) => time(p.position_time) },
    ];
    if (trader) {
      columns.push({ label: "", cell: (p) => h("button", { type: "button", class: "secondary cancel-all", dataset: { symbol: p.symbol },
        onclick: () => cancelAll(p.symbol) }, `Cancel ${p.symbol} orders`) });
    }
    clear(out).append(table(columns, list.items, { empty: "No open position.", rowAttrs: (p) => ({ dataset: { symbol: p.symbol } }) }));
    updated(stamp);
  }
  return poll(refresh, 5000);
}
