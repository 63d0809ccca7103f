// Pipeline health from GET /v1/health/pipeline, refreshed every 5 s.
import { api } from "../api.js";
import { age, badge, clear, h, num, section, table, time, updated } from "../dom.js";
import { poll } from "../ui.js";

const POLL_MS = 5000;

function tile(label, value, kind, id) {
  return h("div", { class: `tile ${kind}`, id }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, value));
}

// "active", or how many scopes are reducing / halted.
function restrictedSummary(states) {
  const halted = states.filter((t) => t.state === "halted").length;
  const reducing = states.filter((t) => t.state === "reducing").length;
  if (!halted && !reducing) return "active";
  return [halted ? `${halted} halted` : "", reducing ? `${reducing} reducing` : ""].filter(Boolean).join(", ");
}

export function render(view) {
  const stamp = h("span", { class: "muted small", id: "health-updated" });
  const body = h("div", { id: "health" });
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Pipeline health"), stamp), body);

  async function refresh() {
    const p = await api("/v1/health/pipeline");
    const producer = p.components.find((c) => c.component === "producer") || p.components[0];
    const ib = producer ? (producer.silent ? "silent" : producer.connection_state) : "no heartbeat";
    const ibKind = producer && !producer.silent && producer.connection_state === "connected" ? "ok" : "bad";
    const circuit = p.agent0_circuit.state;
    clear(body).append(
      h("div", { class: "tiles" },
        tile("IB connection", ib, ibKind, "tile-ib"),
        tile("Stale feeds", `${p.stale_symbols.length} / ${p.feeds.length}`, p.stale_symbols.length ? "bad" : "ok", "tile-stale"),
        tile("Open gaps", String(p.open_gaps.length), p.open_gaps.length ? "warn" : "ok", "tile-gaps"),
        tile("Consumer lag", num(p.consumer_lag_total, 0), p.consumer_lag_total > 1000 ? "warn" : "ok", "tile-lag"),
        tile("Dead letters", num(p.dead_letters_total, 0), p.dead_letters_total ? "warn" : "ok", "tile-dlq"),
        tile("Agent0 circuit", circuit, circuit === "open" ? "bad" : circuit === "closed" ? "ok" : "", "tile-circuit"),
        tile("Kill switch", p.kill_switch_engaged ? "ENGAGED" : "off", p.kill_switch_engaged ? "bad" : "ok", "tile-kill"),
        tile("Trading", restrictedSummary(p.trading_states), p.trading_restricted ? "bad" : "ok", "tile-trading"),
        tile("Firing alerts", String(p.alerts.length), p.alerts.length ? "warn" : "ok", "tile-alerts")),
      section("Feeds", h("p", { class: "muted small" }, `Stale after ${p.stale_after_seconds} s without a quote or bar.`),
        table([
          { label: "symbol", cell: (f) => f.symbol },
          { label: "age", cell: (f) => (f.stale ? badge(age(f.age_seconds), "bad") : age(f.age_seconds)) },
          { label: "last quote", cell: (f) => time(f.last_quote_time) },
          { label: "last bar", cell: (f) => time(f.last_bar_time) },
          { label: "chart", cell: (f) => h("a", { href: `#/charts?symbol=${encodeURIComponent(f.symbol)}` }, "chart") },
        ], p.feeds, { rowAttrs: (f) => ({ class: f.stale ? "stale" : "", dataset: { symbol: f.symbol } }) })),
      section("IB-connected components", table([
        { label: "component", cell: (c) => c.component },
        { label: "state", cell: (c) => badge(c.connection_state, c.connection_state === "connected" ? "ok" : "bad") },
        { label: "heartbeat", cell: (c) => (c.silent ? badge(`${age(c.age_seconds)} ago`, "bad") : `${age(c.age_seconds)} ago`) },
        { label: "symbols active", cell: (c) => c.symbols_active },
        { label: "reconnects", cell: (c) => c.reconnect_count },
      ], p.components, { empty: "No heartbeat recorded." })),
      section("Open gaps", table([
        { label: "symbol", cell: (g) => g.symbol },
        { label: "state", cell: (g) => badge(g.state, "warn") },
        { label: "from", cell: (g) => time(g.start) },
        { label: "to", cell: (g) => time(g.end) },
        { label: "bars", cell: (g) => `${g.recovered_bars} / ${g.missing_bars}` },
        { label: "cause", cell: (g) => g.cause },
      ], p.open_gaps, { empty: "No open gap." })),
      section("Consumer lag", table([
        { label: "group", cell: (l) => l.group_id },
        { label: "topic", cell: (l) => l.topic },
        { label: "partition", cell: (l) => l.partition },
        { label: "lag", cell: (l) => num(l.lag, 0) },
        { label: "as of", cell: (l) => time(l.updated_time) },
      ], p.consumer_lag, { empty: "No sink progress recorded." })),
      section("Dead letters", table([
        { label: "topic", cell: (d) => d.original_topic },
        { label: "component", cell: (d) => d.component },
        { label: "error", cell: (d) => d.error_kind },
        { label: "count", cell: (d) => num(d.count, 0) },
        { label: "last", cell: (d) => time(d.last_time) },
      ], p.dead_letters, { empty: "No dead letters." })),
      section("Firing alerts", table([
        { label: "severity", cell: (a) => badge(a.severity, a.severity === "critical" ? "bad" : "warn") },
        { label: "kind", cell: (a) => a.kind },
        { label: "component", cell: (a) => a.component },
        { label: "message", cell: (a) => a.message },
        { label: "since", cell: (a) => time(a.time) },
      ], p.alerts, { empty: "No alert firing." })),
      section("Trading states", table([
        { label: "scope", cell: (t) => t.scope },
        { label: "state", cell: (t) => badge(t.state, t.state === "active" ? "ok" : t.state === "halted" ? "bad" : "warn") },
        { label: "set by", cell: (t) => t.source },
        { label: "who", cell: (t) => t.actor },
        { label: "why", cell: (t) => t.reason },
        { label: "since", cell: (t) => time(t.time) },
      ], p.trading_states, { empty: "Every scope active (nothing set).", rowAttrs: (t) => ({ dataset: { scope: t.scope } }) })),
      section("Agent0 circuit", h("p", {}, badge(circuit, circuit === "open" ? "bad" : "ok"), " ",
        p.agent0_circuit.since ? `since ${time(p.agent0_circuit.since)}` : "", p.agent0_circuit.reason ? ` — ${p.agent0_circuit.reason}` : "")),
    );
    updated(document.getElementById("health-updated"));
  }
  return poll(refresh, POLL_MS);
}
