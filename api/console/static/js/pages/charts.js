// Price per symbol (5-second bars or aggregated) with signals, entries, stops, targets and fills marked, and the
// session's P&L in a second pane — TradingView lightweight-charts (vendored, see vendor/README.md).
import { api, query } from "../api.js";
import { clear, h, num } from "../dom.js";
import { poll } from "../ui.js";

const INTERVALS = [[5, "5 s"], [60, "1 min"], [300, "5 min"]];
const POLL_MS = 10000;
const COLORS = { up: "#1a9e5c", down: "#d9443c", signal: "#3b6fd4", entry: "#7a4fd0", stop: "#d9443c", take_profit: "#1a9e5c", fill: "#e08a00" };

const seconds = (iso) => Math.floor(new Date(iso).getTime() / 1000);

function markerFor(m) {
  const buy = m.side === "BUY";
  switch (m.kind) {
    case "signal": return { time: seconds(m.time), position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown", color: COLORS.signal, text: "signal" };
    case "fill": return { time: seconds(m.time), position: "atPriceMiddle", price: m.price, shape: "circle", color: COLORS.fill, text: buy ? "buy" : "sell" };
    case "entry": return { time: seconds(m.time), position: "atPriceMiddle", price: m.price, shape: "square", color: COLORS.entry, text: "" };
    default: return { time: seconds(m.time), position: m.kind === "stop" ? "atPriceBottom" : "atPriceTop", price: m.price, shape: m.kind === "stop" ? "arrowUp" : "arrowDown", color: COLORS[m.kind], text: m.kind === "stop" ? "stop" : "target" };
  }
}

export function render(view, ctx) {
  const LWC = window.LightweightCharts;
  const symbolSelect = h("select", { name: "symbol", id: "chart-symbol" });
  const intervalSelect = h("select", { name: "interval", id: "chart-interval" },
    INTERVALS.map(([v, label]) => h("option", { value: v, selected: String(v) === (ctx.params.get("interval") || "5") }, label)));
  const summary = h("p", { class: "muted small", id: "chart-summary" });
  const box = h("div", { class: "chart", id: "chart" });
  const legend = h("p", { class: "legend small" },
    Object.entries({ signal: "signal", entry: "entry", stop: "stop", take_profit: "target", fill: "fill" })
      .map(([k, label]) => h("span", { class: `key key-${k}` }, label)));
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Charts"), summary),
    h("form", { class: "filters" }, h("label", {}, "Symbol", symbolSelect), h("label", {}, "Bars", intervalSelect)),
    box, legend);
  if (!LWC) { box.append(h("p", { class: "error" }, "The chart library did not load.")); return null; }

  const chart = LWC.createChart(box, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#1d2430", fontSize: 12 },
    grid: { vertLines: { color: "#eef1f5" }, horzLines: { color: "#eef1f5" } },
    timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#d5dae1" },
    rightPriceScale: { borderColor: "#d5dae1" },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false, wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  });
  const pnl = chart.addSeries(LWC.LineSeries, { color: "#3b6fd4", lineWidth: 2, title: "session P&L", priceFormat: { type: "price", precision: 2, minMove: 0.01 } }, 1);
  chart.panes()[1]?.setHeight(110);
  const markers = LWC.createSeriesMarkers(candles, []);
  let lines = [];
  let lastKey = "";

  async function refresh() {
    const symbol = symbolSelect.value;
    if (!symbol) return;
    const data = await api(`/v1/chart${query({ symbol, interval: intervalSelect.value, limit: 720 })}`);
    candles.setData(data.bars.map((b) => ({ time: seconds(b.time), open: b.open, high: b.high, low: b.low, close: b.close })));
    pnl.setData(data.pnl.map((p) => ({ time: seconds(p.time), value: p.value })));
    markers.setMarkers(data.markers.map(markerFor).sort((a, b) => a.time - b.time));
    lines.forEach((line) => candles.removePriceLine(line));
    // The newest entry's stop and target as horizontal lines.
    const latest = {};
    for (const m of data.markers) if (m.kind === "stop" || m.kind === "take_profit" || m.kind === "entry") latest[m.kind] = m;
    lines = Object.values(latest).map((m) => candles.createPriceLine({
      price: m.price, color: COLORS[m.kind], lineWidth: 1, lineStyle: 2, axisLabelVisible: true, title: m.kind === "take_profit" ? "target" : m.kind,
    }));
    const key = `${symbol}/${intervalSelect.value}`;
    if (key !== lastKey) { chart.timeScale().fitContent(); lastKey = key; }
    const last = data.pnl.length ? data.pnl[data.pnl.length - 1].value : 0;
    summary.textContent = data.bars.length
      ? `${data.bars.length} bars · ${data.markers.length} marks · position ${num(data.position, 4)} · realized ${num(data.realized_pnl)} · session P&L ${num(last)}`
      : `no bars for ${symbol}`;
    box.dataset.bars = String(data.bars.length);
    box.dataset.markers = String(data.markers.length);
  }

  let stop = null;
  (async () => {
    const health = await api("/v1/health/pipeline");
    const symbols = health.feeds.map((f) => f.symbol);
    const wanted = ctx.params.get("symbol");
    if (wanted && !symbols.includes(wanted)) symbols.unshift(wanted);
    clear(symbolSelect).append(...symbols.map((s) => h("option", { value: s, selected: s === wanted }, s)));
    stop = poll(refresh, POLL_MS);
  })();
  const change = () => { history.replaceState(null, "", `#/charts?symbol=${encodeURIComponent(symbolSelect.value)}&interval=${intervalSelect.value}`); refresh(); };
  symbolSelect.addEventListener("change", change);
  intervalSelect.addEventListener("change", change);
  return () => { if (stop) stop(); chart.remove(); };
}
