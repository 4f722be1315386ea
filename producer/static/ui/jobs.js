// The jobs page: one page of cards (PAGE_SIZE) from GET /v1/jobs with the filters in the URL,
// cursor paging, and live updates from the producer's event stream.
import { ago, api, badge, duration, el, follow, markNav, markReady, span, status } from "./common.js";

const PAGE_SIZE = 48;
const PROMPT_CHARS = 160;
const MAX_HOPS = 6; // cursor hops to fill one filtered page
const HOPS_BUDGET_MS = 1500; // then what was found is shown, with the next cursor
const grid = document.getElementById("job-grid");
const info = document.getElementById("grid-status");
const pageInfo = document.getElementById("page-info");
const prev = document.getElementById("prev-page");
const next = document.getElementById("next-page");
const fields = {
  state: document.getElementById("filter-state"),
  provider: document.getElementById("filter-provider"),
  label: document.getElementById("filter-label"),
  tenant: document.getElementById("filter-tenant"),
};

let nextCursor = null;
let loading = null;
const records = new Map(); // job id → record shown

function query() {
  return new URLSearchParams(location.search);
}

// The filters as the API's query (label key=value → label=key:value; tenant → label tenant:X),
// or an error message naming the bad field.
function apiFilters(params) {
  const out = new URLSearchParams();
  if (params.get("state")) out.set("state", params.get("state"));
  if (params.get("provider")) out.set("provider", params.get("provider"));
  const labels = {};
  const raw = (params.get("label") ?? "").trim();
  if (raw) {
    const match = raw.match(/^([^=:]+)[=:](.*)$/);
    if (!match || !match[1].trim()) return { error: "the label filter must be key=value" };
    labels[match[1].trim()] = match[2].trim();
  }
  const tenant = (params.get("tenant") ?? "").trim();
  if (tenant) labels.tenant = tenant;
  for (const [key, value] of Object.entries(labels)) out.append("label", `${key}:${value}`);
  return { query: out, labels };
}

function matches(record, params, labels) {
  if (params.get("state") && record.state !== params.get("state")) return false;
  if (params.get("provider") && record.provider !== params.get("provider")) return false;
  const own = record.spec?.labels ?? {};
  return Object.entries(labels).every(([key, value]) => own[key] === value);
}

function excerpt(record) {
  const prompt = (record.spec?.prompt ?? "").trim();
  if (!prompt) return record.spec?.image ? "(image to video, no prompt)" : "(no prompt)";
  return prompt.length > PROMPT_CHARS ? `${prompt.slice(0, PROMPT_CHARS - 1)}…` : prompt;
}

function card(record) {
  const cover = record.result?.cover
    ? el("img", { class: "cover", src: `/v1/jobs/${encodeURIComponent(record.id)}/cover`, alt: "", loading: "lazy", decoding: "async" })
    : el("div", { class: "cover-placeholder", dataset: { state: record.state } }, el("span", {}, record.state === "failed" ? "!" : "▶"));
  const taken = duration(record);
  return el(
    "a",
    { class: "job-card", href: `/ui/jobs/${encodeURIComponent(record.id)}`, dataset: { jobId: record.id, state: record.state } },
    el("div", { class: "thumb" }, cover, badge(record.state)),
    el(
      "div",
      { class: "card-body" },
      el("div", { class: "provider-model" }, el("strong", {}, record.provider), " · ", record.model),
      el("p", { class: "prompt", title: record.spec?.prompt ?? "" }, excerpt(record)),
      el(
        "div",
        { class: "card-foot" },
        el("span", { class: "age", title: record.created_at, dataset: { created: record.created_at } }, ago(record.created_at)),
        el("span", { class: "duration", title: "created → completed" }, span(taken)),
      ),
      record.error ? el("div", { class: "card-error", title: record.error.message }, record.error.code) : null,
    ),
  );
}

function put(record, where = "replace") {
  records.set(record.id, record);
  const fresh = card(record);
  const old = grid.querySelector(`a.job-card[data-job-id="${CSS.escape(record.id)}"]`);
  if (old) old.replaceWith(fresh);
  else if (where === "prepend") grid.prepend(fresh);
  else grid.append(fresh);
  fresh.classList.add("flash");
  setTimeout(() => fresh.classList.remove("flash"), 1200);
}

function syncFields(params) {
  fields.state.value = params.get("state") ?? "";
  ensureOption(fields.provider, params.get("provider") ?? "");
  fields.provider.value = params.get("provider") ?? "";
  fields.label.value = params.get("label") ?? "";
  fields.tenant.value = params.get("tenant") ?? "";
}

function ensureOption(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(el("option", { value }, value));
}

async function load() {
  const params = query();
  syncFields(params);
  const filters = apiFilters(params);
  if (filters.error) {
    grid.replaceChildren();
    status(info, filters.error, "error");
    markReady();
    return;
  }
  const q = filters.query;
  loading?.abort();
  loading = new AbortController();
  status(info, "Loading…");
  const started = performance.now();
  try {
    // A filtered page may come back short while older jobs remain (the API scans a bounded
    // window per request): follow the cursor a few times to fill one page, never further.
    const jobs = [];
    let cursor = params.get("cursor");
    records.clear();
    grid.replaceChildren();
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      q.set("limit", String(PAGE_SIZE - jobs.length));
      if (cursor) q.set("cursor", cursor);
      const page = await api(`/v1/jobs?${q}`, { signal: loading.signal });
      jobs.push(...page.jobs);
      grid.append(...page.jobs.map(card)); // shown as found
      for (const record of page.jobs) records.set(record.id, record);
      cursor = page.next_cursor;
      const slow = performance.now() - started > HOPS_BUDGET_MS && jobs.length > 0;
      if (!cursor || jobs.length >= PAGE_SIZE || slow) break;
      status(info, `Searching older jobs… ${jobs.length} found so far`);
    }
    nextCursor = cursor;
    next.disabled = !nextCursor;
    prev.disabled = !params.get("cursor");
    const ms = Math.round(performance.now() - started);
    status(info, jobs.length ? "" : nextCursor ? "No matching jobs among the most recent: try older." : "No jobs match these filters.");
    pageInfo.textContent = `${jobs.length} jobs · ${ms} ms`;
  } catch (error) {
    if (error.name === "AbortError") return;
    status(info, `Could not load jobs: ${error.message}`, "error");
  }
  markReady();
}

function applyFilters() {
  const params = new URLSearchParams();
  for (const [name, field] of Object.entries(fields)) {
    const value = field.value.trim();
    if (value) params.set(name, value);
  }
  history.pushState({ stack: [] }, "", `${location.pathname}${params.toString() ? `?${params}` : ""}`);
  load();
}

for (const field of Object.values(fields)) field.addEventListener("change", applyFilters);
document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters();
});

next.addEventListener("click", () => {
  if (!nextCursor) return;
  const params = query();
  const stack = [...(history.state?.stack ?? []), params.get("cursor") ?? ""];
  params.set("cursor", nextCursor);
  history.pushState({ stack }, "", `${location.pathname}?${params}`);
  load();
  window.scrollTo({ top: 0 });
});

prev.addEventListener("click", () => {
  const params = query();
  const stack = [...(history.state?.stack ?? [])];
  const back = stack.pop() ?? "";
  if (back) params.set("cursor", back);
  else params.delete("cursor");
  history.pushState({ stack }, "", `${location.pathname}${params.toString() ? `?${params}` : ""}`);
  load();
  window.scrollTo({ top: 0 });
});

window.addEventListener("popstate", () => load());

// Live updates: a known card is re-read when its state changes; an unknown job newer than the
// newest card (ids are time-ordered UUIDv7) is read and prepended when it matches the filters
// (first page only). Reads are coalesced: each id once per flush.
const pending = new Set();
let flushTimer = null;

function onState(event) {
  const shown = records.get(event.id);
  if (shown) {
    if (shown.state === event.state) return;
  } else {
    const params = query();
    if (params.get("cursor")) return;
    const newest = grid.querySelector("a.job-card")?.dataset.jobId ?? "";
    if (event.id <= newest) return;
    if (params.get("state") && params.get("state") !== event.state) return;
    if (params.get("provider") && params.get("provider") !== event.provider) return;
  }
  pending.add(event.id);
  flushTimer ??= setTimeout(flush, 300);
}

async function flush() {
  flushTimer = null;
  const ids = [...pending];
  pending.clear();
  const params = query();
  const { labels = {} } = apiFilters(params);
  for (const id of ids) {
    try {
      const record = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      if (records.has(id)) put(record);
      else if (!params.get("cursor") && matches(record, params, labels)) {
        put(record, "prepend");
        status(info, "");
        pageInfo.textContent = `${grid.children.length} jobs · live`;
      }
    } catch {
      // gone (archived, deleted) or the API is away: the next event or reload shows it
    }
  }
}

// Ages and running durations move on without a reload.
setInterval(() => {
  const now = Date.now();
  for (const node of grid.querySelectorAll(".age")) node.textContent = ago(node.dataset.created, now);
  for (const node of grid.querySelectorAll("a.job-card")) {
    const record = records.get(node.dataset.jobId);
    if (record && !record.completed_at) node.querySelector(".duration").textContent = span(duration(record, now));
  }
}, 5000);

async function providers() {
  try {
    const queue = await api("/v1/queue");
    for (const provider of queue.providers ?? []) ensureOption(fields.provider, provider.name);
    fields.provider.value = query().get("provider") ?? "";
  } catch {
    // the queue figures are optional here: the current filter stays an option
  }
}

markNav("nav-jobs");
history.replaceState({ stack: history.state?.stack ?? [] }, "", location.href);
providers();
load();
follow("/v1/events/stream", onState);
