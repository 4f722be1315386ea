// Shared by the dashboard's pages: API calls with the session's CSRF token, DOM building
// without innerHTML (job records carry user input), and formatting.

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const CANCELLABLE = new Set(["queued", "submitting", "running", "submit_unknown"]);

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// fetch() against the API with the session cookie; unsafe methods carry X-CSRF-Token.
// A 401 means the session ended: back to the login page.
export async function api(path, { method = "GET", signal } = {}) {
  const headers = { accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  const answer = await fetch(path, { method, headers, signal, credentials: "same-origin" });
  if (answer.status === 401) {
    const next = location.pathname + location.search;
    location.assign(`/ui/login?next=${encodeURIComponent(next)}`);
    throw new ApiError(401, "unauthorized", "the session has ended");
  }
  const body = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = body?.error ?? {};
    throw new ApiError(answer.status, error.code ?? "error", error.message ?? answer.statusText);
  }
  return body;
}

// el("a", {class: "x", href: "/y", dataset: {jobId: id}}, "text", child): every string
// becomes a text node, so nothing from a record is ever parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function badge(state, attrs = {}) {
  return el("span", { class: "state-badge", ...attrs, dataset: { state } }, label(state));
}

export function label(state) {
  return state === "submit_unknown" ? "submit unknown" : state;
}

export const parseTime = (iso) => (iso ? Date.parse(iso) : NaN);

export function span(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function ago(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (!Number.isFinite(t)) return "–";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// How long a job took (created → completed), or has taken so far.
export function duration(record, now = Date.now()) {
  const start = parseTime(record.created_at);
  const end = record.completed_at ? parseTime(record.completed_at) : TERMINAL.has(record.state) ? NaN : now;
  return (end - start) / 1000;
}

export function localTime(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : "–";
}

export function setLive(connected) {
  const live = document.getElementById("live");
  if (!live) return;
  live.dataset.connected = connected ? "true" : "false";
  live.querySelector("span").textContent = connected ? "live" : "offline";
}

// An EventSource that reports its connection on #live and reopens itself after the browser
// gives up (it retries on its own while the server is reachable). Returns a close function.
export function follow(url, onState) {
  let source = null;
  let closed = false;
  let retry = null;
  const open = () => {
    source = new EventSource(url);
    source.onopen = () => setLive(true);
    source.addEventListener("state", (message) => {
      let data = null;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      onState(data, message.lastEventId);
    });
    source.onerror = () => {
      setLive(false);
      if (source.readyState === EventSource.CLOSED && !closed) {
        // EventSource hides the status: one API read tells a revoked session (api() then
        // goes to the login page) from a server that is away (try again in 5 s).
        api("/v1/jobs?limit=1").then(
          () => (retry = setTimeout(open, 5000)),
          (error) => {
            if (error.status !== 401) retry = setTimeout(open, 5000);
          },
        );
      }
    };
  };
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
    setLive(false);
  };
}

export function status(node, text, kind = "") {
  node.textContent = text;
  node.dataset.kind = kind;
}

export function markReady() {
  document.body.dataset.ready = "1";
}

export function markNav(id) {
  document.getElementById(id)?.setAttribute("aria-current", "page");
}
