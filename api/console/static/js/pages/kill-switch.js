// The kill switch and the trading states: their state for everyone; engage / release / set for admins only, after a
// confirmation with a reason.
import { api } from "../api.js";
import { badge, clear, h, section, table, time, updated } from "../dom.js";
import { confirmWithReason, poll, showBanner } from "../ui.js";

export function render(view, ctx) {
  const stamp = h("span", { class: "muted small", id: "kill-updated" });
  const state = h("div", { id: "kill-state" });
  const history = h("div", { id: "kill-targets" });
  const target = h("input", { name: "target", value: "global", id: "kill-target", pattern: "^(global|[A-Z0-9.\\-]([A-Z0-9 .\\-]{0,10}[A-Z0-9.\\-])?)$" });
  const trading = h("div", { id: "trading-states" });
  const scope = h("input", { name: "scope", value: "account", id: "trading-scope" });
  const stateChoice = h("select", { name: "state", id: "trading-state" },
    h("option", { value: "active" }, "active"), h("option", { value: "reducing" }, "reducing"), h("option", { value: "halted" }, "halted"));
  const controls = ctx.can("admin")
    ? section("Operate",
        h("p", {}, "Engaging stops new orders (risk refuses them) and cancels working orders (execution). Global, or one symbol."),
        h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
          h("label", {}, "Target", target),
          h("button", { type: "button", class: "danger", id: "kill-on", onclick: () => send("on") }, "Engage kill switch"),
          h("button", { type: "button", class: "secondary", id: "kill-off", onclick: () => send("off") }, "Release")))
    : h("p", { class: "muted", id: "kill-readonly" }, "Only an admin can change the kill switch.");
  const tradingControls = ctx.can("admin")
    ? h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
        h("label", {}, "Scope", scope), h("label", {}, "State", stateChoice),
        h("button", { type: "button", class: "secondary", id: "trading-set", onclick: () => setState() }, "Set trading state"))
    : h("p", { class: "muted" }, "Only an admin can change trading states.");
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Kill switch"), stamp), state, controls, section("By target", history),
    section("Trading states",
      h("p", {}, "reducing: only intents that reduce a position pass risk; halted: no new intents (cancels still go). Scope: account or one symbol."),
      tradingControls, trading));

  async function setState() {
    const s = scope.value.trim();
    const to = stateChoice.value;
    const reason = await confirmWithReason(`Set ${s} to ${to}?`,
      to === "active" ? "Orders may flow again." : "Risk passes only what the state allows.", "Set", to !== "active");
    if (!reason) return;
    try {
      const accepted = await api("/v1/control/trading-state", { method: "POST", body: { scope: s, state: to, reason } });
      showBanner(`Trading state for ${accepted.target} accepted (offset ${accepted.offset}); the table follows once it is recorded.`, "info");
      await refresh();
    } catch (error) { showBanner(`Trading state command failed: ${error.message}`); }
  }

  async function send(to) {
    const t = target.value.trim() || "global";
    const reason = await confirmWithReason(
      to === "on" ? `Engage the kill switch for ${t}?` : `Release the kill switch for ${t}?`,
      to === "on" ? "No new order will pass risk, and execution cancels working orders." : "Orders may flow again.",
      to === "on" ? "Engage" : "Release", to === "on");
    if (!reason) return;
    try {
      const accepted = await api("/v1/control/kill-switch", { method: "POST", body: { state: to, reason, target: t } });
      showBanner(`Command ${accepted.command} for ${accepted.target} accepted (offset ${accepted.offset}); the state below follows once it is recorded.`, "info");
      await refresh();
    } catch (error) { showBanner(`Kill switch command failed: ${error.message}`); }
  }

  async function refresh() {
    const p = await api("/v1/health/pipeline");
    clear(state).append(h("div", { class: `kill ${p.kill_switch_engaged ? "engaged" : "off"}` },
      h("span", { class: "kill-label" }, "Kill switch"),
      h("strong", { id: "kill-status" }, p.kill_switch_engaged ? "ENGAGED" : "OFF")));
    clear(history).append(table([
      { label: "target", cell: (k) => k.target },
      { label: "state", cell: (k) => badge(k.engaged ? "engaged" : "off", k.engaged ? "bad" : "ok") },
      { label: "by", cell: (k) => k.actor },
      { label: "reason", cell: (k) => k.reason },
      { label: "at", cell: (k) => time(k.time) },
    ], p.kill_switch, { empty: "Never engaged." }));
    clear(trading).append(table([
      { label: "scope", cell: (t) => t.scope },
      { label: "state", cell: (t) => badge(t.state, t.state === "active" ? "ok" : t.state === "halted" ? "bad" : "warn") },
      { label: "set by", cell: (t) => t.source },
      { label: "who", cell: (t) => t.actor },
      { label: "why", cell: (t) => t.reason },
      { label: "at", cell: (t) => time(t.time) },
    ], p.trading_states, { empty: "Every scope active (nothing set)." }));
    updated(stamp);
  }
  return poll(refresh, 2000);
}
