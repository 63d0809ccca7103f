// Runs awaiting approval: the signal, Agent0's plan, a pre-check of the risk limits, approve / reject with a reason.
// The list polls every 2 s; a run leaves it as soon as the warehouse records its next state.
import { api } from "../api.js";
import { badge, clear, h, num, section, short, table, time, updated } from "../dom.js";
import { confirmWithReason, poll, showBanner } from "../ui.js";

const POLL_MS = 2000;

export function render(view, ctx) {
  const stamp = h("span", { class: "muted small", id: "approvals-updated" });
  const list = h("div", { id: "approvals", class: "stack" });
  const recent = h("div", { id: "recent-runs" });
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Approvals"), stamp),
    list,
    section("Recent runs", recent),
  );
  const cards = new Map();  // run_id → {el, updated}
  const sent = new Map();   // run_id → decision sent from this tab

  async function details(run) {
    const [detail, signal] = await Promise.all([
      api(`/v1/runs/${run.run_id}`),
      api(`/v1/signals/${run.signal_id}`).catch(() => null),
    ]);
    // The pre-check needs a plan (409 no_plan before Agent0 has planned).
    const precheck = detail.plan ? await api(`/v1/runs/${run.run_id}/precheck`) : null;
    return { detail, signal, precheck };
  }

  async function decide(run, action) {
    const verb = action === "approve" ? "Approve" : "Reject";
    const reason = await confirmWithReason(
      `${verb} run ${short(run.run_id)}?`,
      `${run.symbol}: the command goes to orchestration on control.v1 with your name and this reason.`,
      verb, action === "reject",
    );
    if (!reason) return;
    try {
      const accepted = await api(`/v1/runs/${run.run_id}/${action}`, { method: "POST", body: { reason } });
      sent.set(run.run_id, `${action === "approve" ? "Approval" : "Rejection"} sent (command ${short(accepted.command_id)}); waiting for orchestration…`);
      const known = cards.get(run.run_id);
      if (known) known.updated = null;  // re-render the card: the notice instead of the buttons
      await refresh();
    } catch (error) {
      showBanner(`${verb} failed: ${error.message}`);
    }
  }

  function card(run, { detail, signal, precheck }) {
    const plan = detail.plan;
    const actions = ctx.can("trader") && !sent.has(run.run_id)
      ? h("div", { class: "actions" },
          h("button", { type: "button", class: "approve", onclick: () => decide(run, "approve") }, "Approve"),
          h("button", { type: "button", class: "danger reject", onclick: () => decide(run, "reject") }, "Reject"))
      : null;
    const status = sent.get(run.run_id);
    return h("article", { class: "card run", dataset: { runId: run.run_id } },
      h("header", { class: "run-head" },
        h("h2", {}, `${run.symbol} `, plan ? badge(plan.side, plan.side === "BUY" ? "buy" : "sell") : null),
        h("span", { class: "muted small" }, `run ${short(run.run_id)} · waiting since ${time(run.updated_time)}`)),
      status ? h("p", { class: "notice" }, status) : null,
      h("div", { class: "cols" },
        h("div", {}, h("h3", {}, "Signal"), signal ? h("dl", { class: "kv" },
          h("dt", {}, "strategy"), h("dd", {}, signal.strategy),
          h("dt", {}, "confidence"), h("dd", {}, num(signal.confidence)),
          h("dt", {}, "entry / stop / target"), h("dd", {}, `${num(signal.entry, 4)} / ${num(signal.stop, 4)} / ${num(signal.take_profit, 4)}`),
          h("dt", {}, "created"), h("dd", {}, time(signal.created_time))) : h("p", { class: "muted" }, "signal not found")),
        h("div", {}, h("h3", {}, "Agent0's plan"), plan ? h("dl", { class: "kv plan" },
          h("dt", {}, "side"), h("dd", {}, plan.side),
          h("dt", {}, "size"), h("dd", {}, num(plan.quantity, 4)),
          h("dt", {}, "entry"), h("dd", {}, `${plan.order_type}${plan.limit_price != null ? ` @ ${num(plan.limit_price, 4)}` : ""}`),
          h("dt", {}, "stop"), h("dd", {}, num(plan.stop_loss, 4)),
          h("dt", {}, "take-profit"), h("dd", {}, num(plan.take_profit, 4)),
          h("dt", {}, "rationale"), h("dd", {}, plan.rationale)) : h("p", { class: "muted" }, "no plan yet"))),
      precheck ? h("div", { class: "precheck" },
        h("h3", {}, "Risk pre-check ", precheck.passed ? badge("all pass", "ok") : badge(`${precheck.checks.filter((c) => !c.passed).length} would fail`, "bad")),
        table([
          { label: "check", cell: (c) => c.name },
          { label: "value", cell: (c) => num(c.value) },
          { label: "limit", cell: (c) => num(c.limit) },
          { label: "result", cell: (c) => (c.passed ? badge("pass", "ok") : badge("fail", "bad")) },
          { label: "reason", cell: (c) => c.reason },
        ], precheck.checks, { rowAttrs: (c) => ({ class: c.passed ? "" : "failing" }) }),
        h("p", { class: "muted small" }, `Decided at order time by the risk gate: ${precheck.deferred.join(", ")}.`)) : null,
      actions);
  }

  async function refresh() {
    const page = await api("/v1/runs?state=awaiting_approval&limit=50");
    const seen = new Set();
    for (const run of page.items) {
      seen.add(run.run_id);
      const known = cards.get(run.run_id);
      if (known && known.updated === run.updated_time) continue;
      const el = card(run, await details(run));
      if (known) known.el.replaceWith(el); else list.append(el);
      cards.set(run.run_id, { el, updated: run.updated_time });
    }
    for (const [id, entry] of cards) if (!seen.has(id)) { entry.el.remove(); cards.delete(id); }
    // Runs decided from this tab leave the list once orchestration records the decision.
    for (const id of sent.keys()) if (!seen.has(id)) sent.delete(id);
    if (!page.items.length) {
      if (!list.querySelector(".empty")) list.append(h("p", { class: "muted empty" }, "No run is waiting for approval."));
    } else list.querySelector(".empty")?.remove();
    const runs = await api("/v1/runs?limit=8");
    clear(recent).append(table([
      { label: "run", cell: (r) => short(r.run_id) },
      { label: "symbol", cell: (r) => r.symbol },
      { label: "state", cell: (r) => badge(r.state, `state-${r.state}`) },
      { label: "by", cell: (r) => r.actor },
      { label: "updated", cell: (r) => time(r.updated_time) },
      { label: "orders", cell: (r) => h("a", { href: `#/orders?run_id=${r.run_id}` }, "orders") },
    ], runs.items));
    updated(document.getElementById("approvals-updated"));
  }

  return poll(refresh, POLL_MS);
}
