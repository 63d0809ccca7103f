// Strategy performance: every signal of a strategy scored from the bars after it, traded or not
// (GET /v1/strategies/{instance}/performance): hit rate, expectancy and profit factor, by symbol and by period.
import { api, query } from "../api.js";
import { clear, h, num, section, table } from "../dom.js";
import { showBanner } from "../ui.js";

const PERIODS = ["day", "week", "month"];

function pct(value) { return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)} %`; }

// The figures every row shows, in the order the overall card shows them.
const FIGURES = [
  { label: "scored", cell: (s) => String(s.scored) },
  { label: "hit rate", cell: (s) => pct(s.hit_rate) },
  { label: "target / stop / expired", cell: (s) => `${s.hit_target} / ${s.hit_stop} / ${s.expired}` },
  { label: "expectancy (R)", cell: (s) => num(s.expectancy_r, 3) },
  { label: "expectancy (P&L)", cell: (s) => num(s.expectancy_pnl) },
  { label: "profit factor", cell: (s) => num(s.profit_factor) },
];

function rowsOf(items, key, label) {
  return table([{ label, cell: (row) => String(row[key]) }, ...FIGURES.map((f) => ({ label: f.label, cell: (row) => f.cell(row.scores) }))],
    items, { empty: "No scored signal." });
}

export function render(view, ctx) {
  const p = ctx.params;
  const form = h("form", { class: "filters", id: "performance-filters" },
    h("label", {}, "Strategy", h("input", { name: "strategy", value: p.get("strategy") || "", required: true, pattern: "[A-Za-z0-9_.:\\-]{1,64}", placeholder: "donchian_breakout" })),
    h("label", {}, "Symbol", h("input", { name: "symbol", value: p.get("symbol") || "", placeholder: "any", autocapitalize: "characters" })),
    h("label", {}, "Period", h("select", { name: "period" }, PERIODS.map((s) => h("option", { value: s, selected: s === (p.get("period") || "day") }, s)))),
    h("button", { type: "submit" }, "Show"));
  const out = h("div", { id: "performance" });
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Strategy performance")),
    h("p", { class: "muted small" }, "Every signal is scored from the 5-second bars after it, traded or not: its stop, its target or its expiry, at the size a plan would have."),
    form, out);

  async function load() {
    const data = new FormData(form);
    const strategy = data.get("strategy").trim();
    if (!strategy) { clear(out).append(h("p", { class: "muted empty" }, "Name a strategy.")); return; }
    try {
      const filters = { symbol: data.get("symbol").trim().toUpperCase(), period: data.get("period") };
      const perf = await api(`/v1/strategies/${encodeURIComponent(strategy)}/performance${query(filters)}`);
      const overall = perf.overall;
      clear(out).append(
        section("Overall", h("dl", { class: "kv", id: "performance-overall", "data-scored": String(overall.scored) },
          FIGURES.flatMap((f) => [h("dt", {}, f.label), h("dd", {}, f.cell(overall))]))),
        section("By symbol", h("div", { id: "performance-symbols" }, rowsOf(perf.by_symbol, "symbol", "symbol"))),
        section(`By ${perf.period}`, h("div", { id: "performance-periods" }, rowsOf(perf.by_period, "period_start", perf.period))));
    } catch (error) { showBanner(error.message); }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
}
