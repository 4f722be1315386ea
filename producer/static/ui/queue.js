// The queue page: keys and tenants from GET /v1/queue, and five charts of its last hour
// (uPlot, vendored: window.uPlot), refreshed every 5 s.
import { api, badge, el, markNav, markReady, status } from "./common.js";

const REFRESH_MS = 5000;
const info = document.getElementById("queue-status");
const STATES = ["queued", "submitting", "running", "mirroring", "succeeded", "failed", "cancelled"];
const SERIES = {
  finished: { label: "finished", color: "#34d399", unit: "jobs" },
  detection_lag_s: { label: "detection lag", color: "#60a5fa", unit: "s" },
  submit_delay_s: { label: "submit delay", color: "#a78bfa", unit: "s" },
  throttled: { label: "429s", color: "#fbbf24", unit: "" },
  errors: { label: "errors", color: "#f87171", unit: "" },
};
const charts = new Map(); // metric → uPlot

const fixed = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

// A bar filled as far as the key's slots are (CSSOM width: the page's CSP allows no inline
// style attributes).
function meter(load) {
  const fill = el("i", { dataset: { level: load >= 1 ? "full" : load >= 0.75 ? "high" : "ok" } });
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, load)) * 100)}%`;
  return el("span", { class: "meter" }, fill);
}

function keyRow(provider, key) {
  const lowered = key.effective_cap !== null && key.effective_cap !== undefined && key.effective_cap < key.cap;
  const load = key.cap ? key.in_flight / (lowered ? key.effective_cap || key.cap : key.cap) : 0;
  const pm = key.per_minute ?? {};
  return el(
    "tr",
    { class: "key-row", dataset: { provider: provider.name, key: key.key_id } },
    el("td", {}, provider.name),
    el("td", {}, el("code", {}, key.key_id)),
    el(
      "td",
      { class: "num" },
      meter(load),
      `${key.in_flight} / ${key.cap}`,
      lowered ? el("span", { class: "lowered", title: "effective cap, lowered after throttling" }, ` (${fixed(key.effective_cap)})`) : null,
    ),
    el("td", { class: "num" }, String(provider.waiting ?? 0)),
    el("td", { class: "num" }, fixed(pm.submit)),
    el("td", { class: "num" }, fixed(pm.poll)),
    el("td", { class: "num" }, fixed(pm.download)),
    el("td", { class: "num" }, fixed(pm.throttled)),
    el("td", {}, key.cooling ? el("span", { class: "pill cooling" }, "cooling") : null),
  );
}

function renderTables(queue) {
  const rows = [];
  const tenants = [];
  for (const provider of queue.providers ?? []) {
    for (const key of provider.keys ?? []) rows.push(keyRow(provider, key));
    const waiting = Object.entries(provider.waiting_by_tenant ?? {}).sort((a, b) => b[1] - a[1]);
    for (const [tenant, count] of waiting) {
      tenants.push(
        el(
          "tr",
          { class: "tenant-row", dataset: { provider: provider.name, tenant } },
          el("td", {}, provider.name),
          el("td", {}, tenant),
          el("td", { class: "num" }, String(count)),
        ),
      );
    }
  }
  const empty = (cols, text) => el("tr", { class: "empty" }, el("td", { colspan: String(cols) }, text));
  document.querySelector("#queue-table tbody").replaceChildren(...(rows.length ? rows : [empty(9, "no providers")]));
  document.querySelector("#tenant-table tbody").replaceChildren(...(tenants.length ? tenants : [empty(3, "nothing waiting")]));
  document.getElementById("state-counts").replaceChildren(
    ...STATES.map((state) => el("span", { class: "count" }, badge(state), el("b", {}, String(queue.jobs_by_state?.[state] ?? 0)))),
  );
  document.getElementById("queue-updated").textContent = `updated ${new Date((queue.at ?? Date.now() / 1000) * 1000).toLocaleTimeString()}`;
}

function chartSize(node) {
  return { width: Math.max(240, node.clientWidth), height: 170 };
}

function renderCharts(series) {
  const minutes = series?.minutes ?? [];
  for (const node of document.querySelectorAll("div.chart")) {
    const metric = node.dataset.metric;
    const spec = SERIES[metric];
    const data = [minutes, (series?.[metric] ?? []).map((v) => (v === undefined ? null : v))];
    // An empty mean chart says why (detection lag needs a provider that reports its finish time).
    const caption = node.parentElement?.querySelector("figcaption");
    if (caption && spec.unit === "s") caption.dataset.empty = String(data[1].every((v) => v === null));
    const chart = charts.get(metric);
    if (chart) {
      chart.setData(data);
      continue;
    }
    if (typeof window.uPlot !== "function") {
      node.textContent = "uPlot did not load";
      continue;
    }
    const axis = { stroke: "#8a94a8", grid: { stroke: "rgba(138,148,168,0.12)" }, ticks: { stroke: "rgba(138,148,168,0.2)" } };
    const options = {
      ...chartSize(node),
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max ?? 1) * 1.15] } },
      axes: [axis, { ...axis, size: 44 }],
      series: [
        {},
        {
          label: spec.label,
          stroke: spec.color,
          width: 2,
          fill: `${spec.color}22`,
          // A mean is null for a minute without an observation: its points are drawn, so a
          // lone minute shows, and the line joins minutes that have one.
          spanGaps: spec.unit === "s",
          points: { show: spec.unit === "s", size: 5 },
          value: (u, v) => (v === null || v === undefined ? "–" : `${Number.isInteger(v) ? v : v.toFixed(2)}${spec.unit ? ` ${spec.unit}` : ""}`),
        },
      ],
    };
    charts.set(metric, new window.uPlot(options, data, node));
  }
}

let ready = false;
async function refresh() {
  try {
    const queue = await api("/v1/queue");
    renderTables(queue);
    renderCharts(queue.series);
    status(info, "");
  } catch (error) {
    status(info, `Could not read the queue: ${error.message}`, "error");
  }
  if (!ready) {
    ready = true;
    markReady();
  }
}

window.addEventListener("resize", () => {
  for (const node of document.querySelectorAll("div.chart")) charts.get(node.dataset.metric)?.setSize(chartSize(node));
});

markNav("nav-queue");
await refresh();
setInterval(refresh, REFRESH_MS);
