// One order's whole trail: intent → risk checks → routing → broker events → fills → reconciliation (+ the audit).
import { api } from "../api.js";
import { badge, clear, h, num, section, short, table, time, updated } from "../dom.js";
import { cancelOrder, cancellable, modifiableFields, modifyOrder } from "../order-actions.js";
import { poll } from "../ui.js";

const FINAL = new Set(["filled", "cancelled", "rejected", "error"]);

export function render(view, ctx) {
  const id = ctx.match[1];
  const stamp = h("span", { class: "muted small", id: "order-updated" });
  const out = h("div", { id: "order" });
  const actions = h("div", { id: "order-actions" });
  view.append(h("div", { class: "page-head" }, h("h1", {}, `Order ${short(id)}`), stamp), h("p", {}, h("a", { href: "#/orders" }, "← all orders")), actions, out);
  let stop = null;

  // Cancel, and modify (new quantity or prices, judged by risk again) for the fields the order's type has.
  function orderActions(terms) {
    const inputs = modifiableFields(terms).map((name) =>
      h("label", {}, name.replace("_", " "), h("input", { name, id: `modify-${name}`, type: "number", step: "any", min: "0", placeholder: String(terms[name] ?? "") })));
    const modify = inputs.length
      ? [h("form", { class: "filters", id: "order-modify", onsubmit: (e) => e.preventDefault() }, inputs,
          h("button", { type: "button", class: "secondary", id: "order-modify-send", onclick: async () => {
            const changes = {};
            for (const label of inputs) {
              const input = label.querySelector("input");
              if (input.value !== "") changes[input.name] = Number(input.value);
            }
            if (await modifyOrder(id, short(id), changes)) await refresh();
          } }, "Modify order"))]
      : [h("p", { class: "muted", id: "order-modify-none" }, "A market order has no price to modify.")];
    return section("Operate",
      h("p", {}, h("button", { type: "button", class: "danger", id: "order-cancel",
        onclick: async () => { if (await cancelOrder(id, short(id))) await refresh(); } }, "Cancel order")),
      ...modify);
  }

  async function refresh() {
    const d = await api(`/v1/orders/${id}`);
    const o = d.order;
    const i = d.intent;
    const r = d.reconciliation;
    clear(out).append(
      h("div", { class: "tiles" },
        h("div", { class: "tile" }, h("div", { class: "tile-label" }, "status"), h("div", { class: "tile-value", id: "order-status" }, o.status || "no broker event")),
        h("div", { class: "tile" }, h("div", { class: "tile-label" }, "risk"), h("div", { class: "tile-value" }, o.risk)),
        h("div", { class: "tile" }, h("div", { class: "tile-label" }, "filled"), h("div", { class: "tile-value" }, `${num(o.filled_quantity, 4)} / ${num(o.quantity, 4)}`)),
        h("div", { class: "tile" }, h("div", { class: "tile-label" }, "reconciliation"), h("div", { class: "tile-value", id: "order-recon" }, r.status || (r.issues.length ? "issues" : "—")))),
      h("ol", { class: "steps" },
        h("li", { class: "done" }, "intent"),
        h("li", { class: d.risk_decision ? (d.risk_decision.approved ? "done" : "failed") : "" }, "risk"),
        h("li", { class: d.routed ? "done" : "" }, "routed"),
        h("li", { class: d.events.length ? "done" : "" }, "broker"),
        h("li", { class: d.fills.length ? "done" : "" }, "fills"),
        h("li", { class: r.status === "matched" || (r.status && !r.issues.length) ? "done" : r.issues.length ? "failed" : "" }, "reconciled")),
      section("Intent", h("dl", { class: "kv" },
        h("dt", {}, "symbol"), h("dd", {}, i.symbol),
        h("dt", {}, "side / qty"), h("dd", {}, `${i.side} ${num(i.quantity, 4)}`),
        h("dt", {}, "type"), h("dd", {}, `${i.order_type}${i.limit_price != null ? ` @ ${num(i.limit_price, 4)}` : ""}`),
        h("dt", {}, "stop / target"), h("dd", {}, `${num(i.stop_loss, 4)} / ${num(i.take_profit, 4)}`),
        h("dt", {}, "run"), h("dd", {}, i.run_id ? h("a", { href: `#/orders?run_id=${i.run_id}` }, short(i.run_id)) : "—"),
        h("dt", {}, "requested by"), h("dd", {}, i.requested_by),
        h("dt", {}, "created"), h("dd", {}, time(i.created_time)))),
      section("Risk decision", d.risk_decision
        ? [h("p", {}, badge(d.risk_decision.approved ? "approved" : "rejected", d.risk_decision.approved ? "ok" : "bad"), ` at ${time(d.risk_decision.decided_time)}`),
          table([
            { label: "check", cell: (c) => c.name },
            { label: "value", cell: (c) => num(c.value) },
            { label: "limit", cell: (c) => num(c.limit) },
            { label: "result", cell: (c) => badge(c.passed ? "pass" : "fail", c.passed ? "ok" : "bad") },
            { label: "reason", cell: (c) => c.reason },
          ], d.risk_decision.checks)]
        : h("p", { class: "muted" }, "No decision recorded yet.")),
      section("Broker events", table([
        { label: "time", cell: (e) => time(e.event_time) },
        { label: "leg", cell: (e) => e.leg },
        { label: "status", cell: (e) => badge(e.status, `status-${e.status}`) },
        { label: "filled", cell: (e) => `${num(e.filled_quantity, 4)}${e.avg_fill_price != null ? ` @ ${num(e.avg_fill_price, 4)}` : ""}` },
        { label: "remaining", cell: (e) => num(e.remaining_quantity, 4) },
        { label: "reconciliation", cell: (e) => e.reconciliation_status || "" },
        { label: "message", cell: (e) => e.broker_message || "" },
      ], d.events, { empty: "No broker event yet." })),
      section("Fills", h("div", { id: "fills" }, table([
        { label: "time", cell: (f) => time(f.exec_time) },
        { label: "exec id", cell: (f) => f.exec_id },
        { label: "side", cell: (f) => badge(f.side, f.side === "BUY" ? "buy" : "sell") },
        { label: "qty", cell: (f) => num(f.quantity, 4) },
        { label: "price", cell: (f) => num(f.price, 4) },
        { label: "commission", cell: (f) => num(f.commission, 4) },
      ], d.fills, { empty: "No fill yet." }))),
      section("Reconciliation", h("p", {}, r.status ? `broker flag: ${r.status}` : "no broker flag",
        r.issues.length ? ` — issues: ${r.issues.join(", ")}` : " — no issue")),
      section("Audit trail", table([
        { label: "time", cell: (t) => time(t.time) },
        { label: "stage", cell: (t) => t.stage },
        { label: "status", cell: (t) => t.status },
        { label: "detail", cell: (t) => t.detail },
      ], d.trail)),
    );
    // Rebuilt only when it appears or goes: polling must not wipe what the trader is typing.
    const operable = ctx.can("trader") && cancellable(o);
    if (operable !== (actions.dataset.operable === "1")) {
      actions.dataset.operable = operable ? "1" : "0";
      clear(actions).append(operable ? orderActions(i) : "");
    }
    updated(stamp);
    if (FINAL.has(o.status) && r.status && stop) { stop(); stop = null; }  // nothing more will happen
  }
  stop = poll(refresh, 3000);
  return () => stop && stop();
}
