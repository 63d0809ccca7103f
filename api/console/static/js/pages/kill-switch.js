// The kill switch: its state for everyone; engage / release for admins only, after a confirmation with a reason.
import { api } from "../api.js";
import { badge, clear, h, section, table, time, updated } from "../dom.js";
import { confirmWithReason, poll, showBanner } from "../ui.js";

export function render(view, ctx) {
  const stamp = h("span", { class: "muted small", id: "kill-updated" });
  const state = h("div", { id: "kill-state" });
  const history = h("div", { id: "kill-targets" });
  const target = h("input", { name: "target", value: "global", id: "kill-target", pattern: "^(global|[A-Z0-9 .\\-]{1,12})$" });
  const controls = ctx.can("admin")
    ? section("Operate",
        h("p", {}, "Engaging stops new orders (risk refuses them) and cancels working orders (execution). Global, or one symbol."),
        h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
          h("label", {}, "Target", target),
          h("button", { type: "button", class: "danger", id: "kill-on", onclick: () => send("on") }, "Engage kill switch"),
          h("button", { type: "button", class: "secondary", id: "kill-off", onclick: () => send("off") }, "Release")))
    : h("p", { class: "muted", id: "kill-readonly" }, "Only an admin can change the kill switch.");
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Kill switch"), stamp), state, controls, section("By target", history));

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
    updated(stamp);
  }
  return poll(refresh, 2000);
}
