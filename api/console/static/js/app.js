// The console shell: sign-in, navigation (hash routes), and each page's lifecycle. A page module exports
// `render(view, ctx)` and may return a cleanup function (it stops its polling there).
import { api, can, claims, clearToken, getToken, onSignedOut, role, setToken } from "./api.js";
import { clear, h } from "./dom.js";
import { showBanner } from "./ui.js";
import * as approvals from "./pages/approvals.js";
import * as health from "./pages/health.js";
import * as signals from "./pages/signals.js";
import * as strategies from "./pages/strategies.js";
import * as strategyPerformance from "./pages/performance.js";
import * as orders from "./pages/orders.js";
import * as order from "./pages/order.js";
import * as charts from "./pages/charts.js";
import * as killSwitch from "./pages/kill-switch.js";
import * as positions from "./pages/positions.js";

const routes = [
  [/^\/approvals$/, approvals, "approvals"],
  [/^\/health$/, health, "health"],
  [/^\/signals$/, signals, "signals"],
  [/^\/strategies$/, strategies, "strategies"],
  [/^\/performance$/, strategyPerformance, "performance"],
  [/^\/orders$/, orders, "orders"],
  [/^\/orders\/([A-Za-z0-9._:-]+)$/, order, "orders"],
  [/^\/positions$/, positions, "positions"],
  [/^\/charts$/, charts, "charts"],
  [/^\/kill-switch$/, killSwitch, "kill-switch"],
];

const view = document.getElementById("view");
let cleanup = null;

function showLogin(message) {
  if (cleanup) { cleanup(); cleanup = null; }
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  clear(view);
  view.hidden = true;
  document.getElementById("login").hidden = false;
  const err = document.getElementById("login-error");
  err.textContent = message || "";
  err.hidden = !message;
  document.getElementById("token").focus();
}

function showShell() {
  document.getElementById("login").hidden = true;
  view.hidden = false;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = claims()?.sub || "?";
  const r = role();
  const badge = document.getElementById("who-role");
  badge.textContent = r;
  badge.className = `badge role-${r}`;
  document.body.dataset.role = r;
}

async function route() {
  if (!getToken()) { showLogin(); return; }
  showShell();
  showBanner("");
  const hash = location.hash.replace(/^#/, "") || "/approvals";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  if (cleanup) { cleanup(); cleanup = null; }
  clear(view);
  for (const [pattern, page, name] of routes) {
    const match = path.match(pattern);
    if (!match) continue;
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
    cleanup = page.render(view, { params, match, can, navigate: (to) => { location.hash = to; } }) || null;
    return;
  }
  view.append(h("p", {}, "No such page. ", h("a", { href: "#/approvals" }, "Go to approvals.")));
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  if (!role(token)) { showLogin("That is not a token with a viewer, trader or admin role."); return; }
  try {
    await api("/v1/runs?limit=1", { token });  // the API checks signature, expiry, issuer, audience and role
  } catch (error) {
    showLogin(`The API refused the token: ${error.message}`);
    return;
  }
  setToken(token);
  document.getElementById("token").value = "";
  route();
});
document.getElementById("logout").addEventListener("click", () => clearToken());
onSignedOut(() => showLogin("Signed out (the token was removed, or the API answered 401)."));
window.addEventListener("hashchange", route);
route();
