// Strategy instances (GET /v1/strategies): what each runs, whether it is on, how many signals it made and its
// scores (once signals.outcomes.v1 is recorded); admins switch an instance on or off, after a confirmation with a
// reason (POST /v1/strategies/{instance}/enable|disable, an audited command on control.v1).
import { api } from "../api.js";
import { badge, clear, h, num, section, table, time, updated } from "../dom.js";
import { confirmWithReason, poll, showBanner } from "../ui.js";

function params(values) {
  return Object.entries(values).map(([k, v]) => `${k}=${v}`).join(", ") || "defaults";
}

function scores(values) {
  if (!values) return h("span", { class: "muted" }, "—");
  return Object.entries(values).map(([k, v]) => `${k} ${num(v)}`).join(", ");
}

function status(s) {
  if (s.failure) return badge("failed", "bad");
  return s.enabled ? badge("enabled", "ok") : badge("disabled", "warn");
}

export function render(view, ctx) {
  const stamp = h("span", { class: "muted small", id: "strategies-updated" });
  const list = h("div", { id: "strategies" });
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Strategies"), stamp),
    h("p", {}, "Each instance is one strategy with its params and symbols (IBSTREAM_STRATEGIES_FILE). A strategy that fails is disabled by the signals worker until it is enabled again."),
    section("Instances", list));

  async function flip(instance, to) {
    const reason = await confirmWithReason(
      `${to === "enable" ? "Enable" : "Disable"} ${instance}?`,
      to === "enable" ? "Its signals start with the next bar." : "It makes no new signals; those already made run their course.",
      to === "enable" ? "Enable" : "Disable", to !== "enable");
    if (!reason) return;
    try {
      const accepted = await api(`/v1/strategies/${encodeURIComponent(instance)}/${to}`, { method: "POST", body: { reason } });
      showBanner(`${to} ${instance} accepted (offset ${accepted.offset}); the table follows once it is recorded.`, "info");
      await refresh();
    } catch (error) { showBanner(`Switching ${instance} failed: ${error.message}`); }
  }

  function actions(s) {
    if (!ctx.can("admin")) return h("span", { class: "muted" }, "admin only");
    const to = s.enabled && !s.failure ? "disable" : "enable";
    return h("button", { type: "button", class: to === "disable" ? "secondary" : "", "data-instance": s.name,
      onclick: () => flip(s.name, to) }, to === "disable" ? "Disable" : "Enable");
  }

  async function refresh() {
    const page = await api("/v1/strategies");
    clear(list).append(table([
      { label: "instance", cell: (s) => s.name },
      { label: "strategy", cell: (s) => `${s.strategy} ${s.version}` },
      { label: "params", cell: (s) => params(s.params) },
      { label: "symbols", cell: (s) => (s.symbols.length ? s.symbols.join(", ") : "all") },
      { label: "state", cell: (s) => status(s) },
      { label: "signals", cell: (s) => `${s.signals.total} (${s.signals.buy} buy, ${s.signals.sell} sell)` },
      { label: "last signal", cell: (s) => time(s.signals.last_signal_time) },
      { label: "scores", cell: (s) => scores(s.scores) },
      { label: "why", cell: (s) => s.failure || s.switch_reason || "" },
      { label: "", cell: (s) => actions(s) },
    ], page.items, { empty: "No strategy instances configured.", rowAttrs: (s) => ({ "data-instance": s.name }) }));
    updated(stamp);
  }
  return poll(refresh, 3000);
}
