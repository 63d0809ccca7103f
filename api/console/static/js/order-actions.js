// Operator order commands shared by pages: cancel one order, cancel every working order of a symbol (or the account).
// Each asks for confirmation with a reason, then sends the command; the API answers 202 once Kafka has it, and the
// order's trail (the command, then IB's Cancelled event) follows on the next polls. 404/409 come back with why.
import { api } from "./api.js";
import { confirmWithReason, showBanner } from "./ui.js";

// Parent statuses of a working order (on its way to IB or working there): what a cancel applies to.
export const WORKING = new Set(["pending_submit", "submitted", "acknowledged", "partially_filled"]);

// Whether a cancel button makes sense for an order summary: working, or approved and not yet at IB.
export function cancellable(order) {
  return order.risk !== "rejected" && (order.status == null || WORKING.has(order.status));
}

export async function cancelOrder(orderId, label) {
  const reason = await confirmWithReason(`Cancel order ${label}?`,
    "Execution cancels it at IB (a bracket's untriggered stop and target go with it). If it filled meanwhile, nothing is cancelled and the trail says so.",
    "Cancel order", true);
  if (!reason) return null;
  try {
    const accepted = await api(`/v1/orders/${orderId}/cancel`, { method: "POST", body: { reason } });
    showBanner(`Cancel of ${label} accepted (offset ${accepted.offset}); the status follows once IB confirms.`, "info");
    return accepted;
  } catch (error) {
    showBanner(`Cancel refused: ${error.message}`);
    return null;
  }
}

export async function cancelAll(scope) {
  const reason = await confirmWithReason(`Cancel every working order of ${scope}?`,
    "Working entries are cancelled with their untriggered stops and targets; the stop and target of a filled entry stay (flatten closes a position). Cancels go even while halted.",
    "Cancel all", true);
  if (!reason) return null;
  try {
    const accepted = await api("/v1/orders/cancel-all", { method: "POST", body: { scope, reason } });
    showBanner(`Cancel all for ${accepted.target} accepted (offset ${accepted.offset}).`, "info");
    return accepted;
  } catch (error) {
    showBanner(`Cancel all refused: ${error.message}`);
    return null;
  }
}

// The fields a modification may change for an order's terms: quantity, the entry's own prices, its bracket's.
export function modifiableFields(terms) {
  if (terms.order_type === "MKT") return [];
  const fields = ["quantity"];
  if (terms.order_type === "LMT" || terms.order_type === "STP_LMT") fields.push("limit_price");
  if (terms.order_type === "STP" || terms.order_type === "STP_LMT") fields.push("stop_price");
  if (terms.stop_loss != null) fields.push("stop_loss");
  if (terms.take_profit != null) fields.push("take_profit");
  return fields;
}

export async function modifyOrder(orderId, label, changes) {
  const what = Object.entries(changes).map(([k, v]) => `${k} ${v}`).join(", ");
  if (!what) { showBanner("Enter a new quantity or price first."); return null; }
  const reason = await confirmWithReason(`Modify order ${label}: ${what}?`,
    "Risk judges the new terms again; execution changes the order at IB only if risk approves (the trail shows either).",
    "Modify order");
  if (!reason) return null;
  try {
    const accepted = await api(`/v1/orders/${orderId}/modify`, { method: "POST", body: { reason, ...changes } });
    showBanner(`Modification of ${label} accepted (offset ${accepted.offset}); risk judges it next.`, "info");
    return accepted;
  } catch (error) {
    showBanner(`Modification refused: ${error.message}`);
    return null;
  }
}
