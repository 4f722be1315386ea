// One job: player, cover, timeline bar, events, spec, error; cancel and download; live while
// the job is not finished (its own event stream, closed at a terminal state).
import {
  api, badge, CANCELLABLE, el, follow, label, localTime, markNav, markReady, parseTime, span, status, TERMINAL,
} from "./common.js";

const id = document.body.dataset.jobId;
const path = `/v1/jobs/${encodeURIComponent(id)}`;
const info = document.getElementById("job-status");
const stateNode = document.getElementById("job-state");
const cancelButton = document.getElementById("cancel");
const download = document.getElementById("download");
const SPEC_STRING_MAX = 240;

let current = null;
let currentEvents = [];
let stop = null;

// Long strings (data: URIs of input images) are shortened for display only.
function shorten(value) {
  if (typeof value === "string" && value.length > SPEC_STRING_MAX) {
    return `${value.slice(0, 80)}… (${Math.round(value.length / 1024)} KiB)`;
  }
  if (Array.isArray(value)) return value.map(shorten);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shorten(v)]));
  return value;
}

function firstAt(events, states) {
  const found = events.find((event) => states.includes(event.state));
  return found ? found.at : null;
}

// queued → submitted → provider finished → mirrored, from the record's timestamps (the
// timeline's entries where a timestamp is missing). A phase still under way runs to now.
function phases(record, events) {
  const created = parseTime(record.created_at);
  const submitted = parseTime(record.submitted_at ?? firstAt(events, ["running"]));
  const finished = parseTime(record.provider_finished_at ?? firstAt(events, ["mirroring"]));
  const completed = parseTime(record.completed_at);
  const live = !TERMINAL.has(record.state);
  const end = (t) => (Number.isFinite(t) ? t : live ? Date.now() : completed);
  const out = [];
  out.push({ phase: "queued", name: "queued", from: created, to: end(Number.isFinite(submitted) ? submitted : NaN) });
  if (Number.isFinite(submitted)) {
    out.push({ phase: "submitted", name: "generating at provider", from: submitted, to: end(finished) });
  }
  if (Number.isFinite(finished)) {
    out.push({ phase: "provider_finished", name: "mirroring", from: finished, to: end(completed) });
  }
  if (record.state === "succeeded" && Number.isFinite(completed)) {
    out.push({ phase: "mirrored", name: "mirrored", from: completed, to: completed, mark: true });
  }
  return out.filter((p) => Number.isFinite(p.from) && Number.isFinite(p.to));
}

function renderTimeline(record, events) {
  const bar = document.getElementById("timeline-bar");
  const legend = document.getElementById("timeline-legend");
  const list = phases(record, events);
  const total = Math.max(1, list.reduce((sum, p) => sum + (p.to - p.from), 0));
  bar.replaceChildren(
    ...list.map((p) => {
      const seconds = (p.to - p.from) / 1000;
      return el(
        "div",
        { class: `segment${p.mark ? " mark" : ""}`, dataset: { phase: p.phase }, title: `${p.name}: ${p.mark ? localTime(new Date(p.from).toISOString()) : span(seconds)}` },
        el("span", {}, p.mark ? "✓" : span(seconds)),
      );
    }),
  );
  [...bar.children].forEach((node, i) => {
    const p = list[i];
    node.style.flexGrow = p.mark ? "0" : String(Math.max(0.03, (p.to - p.from) / total));
  });
  legend.replaceChildren(
    ...list.map((p) => el("span", { class: "legend-item", dataset: { phase: p.phase } }, el("i"), p.name, p.mark ? "" : ` · ${span((p.to - p.from) / 1000)}`)),
  );
}

function fact(name, value) {
  return [el("dt", {}, name), el("dd", {}, value ?? "–")];
}

function renderFacts(record) {
  const labels = Object.entries(record.spec?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  document.getElementById("job-facts").replaceChildren(
    ...fact("Provider task", record.provider_task_id),
    ...fact("Created", localTime(record.created_at)),
    ...fact("Submitted", record.submitted_at ? localTime(record.submitted_at) : null),
    ...fact("Provider finished", record.provider_finished_at ? localTime(record.provider_finished_at) : null),
    ...fact("Completed", record.completed_at ? localTime(record.completed_at) : null),
    ...fact("Attempts / polls", `${record.attempts} / ${record.polls}`),
    ...fact("Labels", labels || null),
    ...(record.reused_from ? fact("Reused from", el("a", { href: `/ui/jobs/${encodeURIComponent(record.reused_from)}` }, record.reused_from)) : []),
    ...(record.result?.video ? fact("Video", `${Math.round((record.result.video.size ?? 0) / 1024)} KiB · sha256 ${String(record.result.video.sha256 ?? "").slice(0, 12)}…`) : []),
  );
}

function renderMedia(record) {
  const box = document.getElementById("media-box");
  const coverBox = document.getElementById("cover-box");
  const hasVideo = record.state === "succeeded" && record.result?.video;
  const hasCover = record.state === "succeeded" && record.result?.cover;
  if (hasVideo && !document.getElementById("player")) {
    box.replaceChildren(
      el("video", { id: "player", src: `${path}/video`, controls: true, preload: "metadata", playsinline: true, poster: hasCover ? `${path}/cover` : null }),
    );
  } else if (!hasVideo) {
    box.replaceChildren(el("span", { class: "muted" }, record.state === "failed" ? "no video: the job failed" : record.state === "cancelled" ? "no video: the job was cancelled" : `no video yet: ${label(record.state)}…`));
  }
  coverBox.hidden = !hasCover;
  if (hasCover && !document.getElementById("cover")) coverBox.append(el("img", { id: "cover", src: `${path}/cover`, alt: "cover image" }));
  download.hidden = !hasVideo;
}

function renderEvents(events) {
  document.getElementById("event-list").replaceChildren(
    ...events.map((event) => {
      const extra = Object.entries(event).filter(([k]) => !["at", "state", "event"].includes(k));
      return el(
        "li",
        {},
        el("time", { datetime: event.at ?? "" }, localTime(event.at)),
        event.state ? badge(event.state) : null,
        el("span", { class: "event-name" }, typeof event.event === "string" ? event.event : JSON.stringify(event.event ?? "")),
        extra.length ? el("span", { class: "muted" }, extra.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")) : null,
      );
    }),
  );
}

function render(record, events) {
  current = record;
  currentEvents = events;
  stateNode.dataset.state = record.state;
  stateNode.textContent = label(record.state);
  document.getElementById("job-provider").textContent = `${record.provider} · ${record.model}`;
  const error = document.getElementById("job-error");
  error.hidden = !record.error;
  error.dataset.state = record.state;
  if (record.error) error.replaceChildren(el("strong", {}, record.error.code), " ", record.error.message);
  cancelButton.hidden = !CANCELLABLE.has(record.state);
  document.getElementById("job-spec").textContent = JSON.stringify(shorten(record.spec), null, 2);
  renderMedia(record);
  renderFacts(record);
  renderTimeline(record, events);
  renderEvents(events);
}

async function refresh() {
  try {
    const [record, timeline] = await Promise.all([api(path), api(`${path}/events`)]);
    render(record, timeline.events ?? []);
    status(info, "");
    if (TERMINAL.has(record.state) && stop) {
      stop();
      stop = null;
      document.getElementById("live").hidden = true;
    }
    return record;
  } catch (error) {
    if (error.status === 404) {
      // Nothing of the job is shown: not its panels, nor a badge still saying "loading".
      for (const node of document.querySelectorAll(".job-layout, .job-lower, #live")) node.hidden = true;
      stateNode.textContent = "not found";
      stateNode.dataset.state = "unknown";
    }
    status(info, error.status === 404 ? "No such job (or not yours)." : `Could not load the job: ${error.message}`, "error");
    return null;
  }
}

let again = null;
function soon() {
  again ??= setTimeout(() => {
    again = null;
    refresh();
  }, 200);
}

cancelButton.addEventListener("click", async () => {
  if (!confirm(`Cancel job ${id}?`)) return;
  cancelButton.disabled = true;
  try {
    const record = await api(path, { method: "DELETE" });
    status(info, `Cancel requested: the job is ${label(record.state)}.`);
    await refresh();
  } catch (error) {
    status(info, `Cancel refused: ${error.message}`, "error");
  } finally {
    cancelButton.disabled = false;
  }
});

// A running job's duration bar grows while the page is open.
setInterval(() => {
  if (current && !TERMINAL.has(current.state)) renderTimeline(current, currentEvents);
}, 1000);

markNav("nav-jobs");
const first = await refresh();
markReady();
if (first && !TERMINAL.has(first.state)) stop = follow(`${path}/events?stream=true`, soon);
else document.getElementById("live").hidden = true; // a finished job has nothing to follow
