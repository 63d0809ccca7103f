// Token storage, role, and the one fetch wrapper every page uses: it sends the bearer token and turns an API error
// body ({code, message}) into an ApiError. A 401 signs the tab out (expired or revoked token).
const KEY = "ibstream.token";
const RANK = { viewer: 1, trader: 2, admin: 3 };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = new Set();
export function onSignedOut(fn) { listeners.add(fn); }

export function getToken() { return sessionStorage.getItem(KEY); }
export function setToken(token) { sessionStorage.setItem(KEY, token); }
export function clearToken() {
  sessionStorage.removeItem(KEY);
  listeners.forEach((fn) => fn());
}

// The claims, for display and for hiding buttons only: the API verifies the signature and enforces the role.
export function claims(token = getToken()) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

export function role(token = getToken()) {
  const c = claims(token);
  if (!c) return null;
  const roles = Array.isArray(c.roles) ? c.roles : c.role ? [c.role] : [];
  return roles.filter((r) => r in RANK).sort((a, b) => RANK[b] - RANK[a])[0] || null;
}

export function can(needed) { return (RANK[role()] || 0) >= RANK[needed]; }

export async function api(path, { method = "GET", body, token = getToken() } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, "network", `the API cannot be reached (${error.message})`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = new ApiError(response.status, data?.code || "error", data?.message || response.statusText);
    if (response.status === 401 && token === getToken()) clearToken();
    throw error;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== "") search.set(key, value);
  const s = search.toString();
  return s ? `?${s}` : "";
}
