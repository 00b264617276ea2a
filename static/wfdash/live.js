// Live updates over WebSocket: the run page's timeline, Gantt and graph; the runs list.
// Every checkpoint is applied exactly once: the page keeps the last seq it has and
// reconnects with ?after=<seq>, dropping any seq it already holds.

import { StreamView } from "./streams.js";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function fromHtml(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  for (const input of t.content.querySelectorAll('input[name="csrfmiddlewaretoken"]')) {
    if (!input.value) input.value = csrf;  // rendered outside a request by the consumer
  }
  return t.content.firstElementChild;
}

function connect(path, onMessage, cursor, onOpen) {
  let delay = 250;
  const open = () => {
    const ws = new WebSocket(wsUrl(cursor ? `${path}?after=${cursor()}` : path));
    ws.onopen = () => { delay = 250; document.body.dataset.live = "connected"; onOpen?.(); };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = (e) => {
      document.body.dataset.live = "disconnected";
      if (e.code >= 4400 && e.code < 4500) return;  // refused: not signed in, unknown run
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 5000);
    };
  };
  open();
}

// -- run page ---------------------------------------------------------------
// The page shows one window of checkpoints, newest first. On the newest window live rows
// go on top and the oldest fall off, so it stays WINDOW rows; on any other window (older,
// a jump, another step) live rows are only counted, in a "N new checkpoints" notice.
// The Gantt comes binned from the server (at most ~200 bars per step); live checkpoints
// add a bar each until there are as many again, then the binned one is fetched afresh.

function readGantt() {
  const el = document.getElementById("gantt-data");
  const data = el ? JSON.parse(el.textContent) : null;
  return { t0: data?.t0 ?? null, lanes: data?.lanes || [], bars: data?.bars || [], bins: data?.bins || 200, added: 0 };
}

const ROW_PX = 15;
const MAX_ROWS = 8;  // as timeline.GANTT_ROWS

function fmtMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

// Rows within a step's lane: each bar takes the first row free at its start (failed attempts
// drawn before it count), as timeline.assign_rows does on the server.
function assignRows(bars) {
  const ends = new Map();
  const order = bars.map((b, i) => i).sort((i, j) => bars[i][0] - bars[j][0] || bars[i][1] - bars[j][1]);
  const rowOf = new Array(bars.length);
  for (const i of order) {
    const [lane, start, end] = bars[i];
    const from = start - (bars[i][7] || []).reduce((a, b) => a + b, 0);
    const rows = ends.get(lane) || [];
    ends.set(lane, rows);
    let row = rows.findIndex((busy) => busy <= from);
    if (row < 0) {
      row = rows.length < MAX_ROWS ? rows.length : MAX_ROWS - 1;
      if (row === rows.length) rows.push(end);
    }
    rows[row] = Math.max(rows[row], end);
    rowOf[i] = row;
  }
  return { rowOf, rowsPerLane: (lane) => Math.max(1, (ends.get(lane) || []).length) };
}

function niceStep(span, count) {
  const raw = span / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

function drawGantt(data, gantt) {
  gantt.replaceChildren();
  if (!data.bars.length) return;
  let t1 = 0, tmin = 0;
  for (const b of data.bars) {
    t1 = Math.max(t1, b[2]);
    tmin = Math.min(tmin, b[1] - (b[7] || []).reduce((a, x) => a + x, 0));
  }
  const span = Math.max(t1 - tmin, 1);
  const pct = (t) => `${((t - tmin) / span) * 100}%`;
  const { rowOf, rowsPerLane } = assignRows(data.bars);
  const tracks = data.lanes.map((step, lane) => {
    const row = document.createElement("div");
    row.className = "lane";
    row.dataset.step = step;
    const label = document.createElement("span");
    label.textContent = step;
    label.title = step;
    const track = document.createElement("div");
    track.className = "track";
    track.dataset.rows = String(rowsPerLane(lane));
    track.style.height = `${rowsPerLane(lane) * ROW_PX - 1}px`;
    row.append(label, track);
    gantt.append(row);
    return track;
  });
  data.bars.forEach((b, i) => {
    const [lane, start, end, n, first, last] = b;
    const retries = b[7] || [];
    const top = `${rowOf[i] * ROW_PX}px`;
    const bar = document.createElement("div");
    bar.className = n > 1 ? "bar binned" : "bar";
    bar.style.left = pct(start);
    bar.style.width = `${((end - start) / span) * 100}%`;
    bar.style.top = top;
    bar.dataset.seq = String(first);
    bar.dataset.row = String(rowOf[i]);
    const step = data.lanes[lane];
    bar.title = n > 1
      ? `${step}: ${n} checkpoints #${first}–#${last}, ${fmtMs(end - start)} in all`
      : `${step} #${first} · ${fmtMs(end - start)} · ${retries.length + 1} attempt${retries.length ? "s" : ""}`;
    tracks[lane].append(bar);
    // Failed attempts, drawn just before the one that succeeded (their delays are not recorded).
    let at = start;
    retries.slice().reverse().forEach((ms, k) => {
      const r = document.createElement("div");
      r.className = "bar retry";
      r.style.left = pct(at - ms);
      r.style.width = `${(ms / span) * 100}%`;
      r.style.top = top;
      r.dataset.seq = String(first);
      r.title = `${step} #${first} · failed attempt ${retries.length - k} of ${retries.length + 1} · ${fmtMs(ms)}`;
      tracks[lane].append(r);
      at -= ms;
    });
  });
  const axis = document.createElement("div");
  axis.className = "axis";
  const step = niceStep(span, 5);
  const ticks = [];
  for (let t = 0; t <= span + 1e-9; t += step) ticks.push(t);
  if (span - ticks[ticks.length - 1] > step / 3) ticks.push(span);
  for (const t of ticks) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = `${(t / span) * 100}%`;
    tick.textContent = t === 0 ? "0" : `+${fmtMs(t)}`;
    axis.append(tick);
  }
  gantt.append(axis);
  if (data.t0 !== null) {
    const note = document.createElement("div");
    note.className = "axis-start";
    const time = document.createElement("time");
    time.setAttribute("datetime", new Date(data.t0 + tmin).toISOString());
    note.append("0 = ", time);
    gantt.append(note);
  }
}

// Graph nodes: completed (has checkpoints), running (accepts an event just emitted, or in
// flight), failed (named by a failed run's error).
function stepNode(step) {
  return document.getElementById(`step-${step}`);
}

function markStep(step, cls = "done") {
  const node = stepNode(step);
  if (!node || !node.classList.contains("step")) return;
  if (cls === "done") node.classList.remove("running");
  node.classList.add(cls);
}

function readGraph() {
  const el = document.getElementById("graph-data");
  const data = el ? JSON.parse(el.textContent) : {};
  return { accepts: data.accepts || {}, done: data.done || [], running: data.running || [], failed: data.failed || "" };
}

function settleGraph(status, error) {
  for (const node of document.querySelectorAll(".wf-graph .node.step.running")) node.classList.remove("running");
  if (status === "failed") {
    const m = /step '([^']+)'/.exec(error || "");
    if (m) markStep(m[1], "failed");
  }
}

function runPage(timeline) {
  const runId = timeline.dataset.run;
  const latest = timeline.dataset.latest === "1";
  const stepFilter = timeline.dataset.stepFilter || "";
  const size = parseInt(timeline.dataset.window || "100", 10);
  let lastSeq = parseInt(timeline.dataset.lastSeq || "0", 10);
  let status = timeline.dataset.status;
  let unseen = 0;
  let gantt = readGantt();
  let redraw = 0;
  const scheduleDraw = () => {
    if (!redraw) redraw = requestAnimationFrame(() => { redraw = 0; drawGantt(gantt, document.getElementById("gantt")); });
  };
  const graph = readGraph();
  for (const step of graph.done) markStep(step);
  for (const step of graph.running) markStep(step, "running");
  if (graph.failed) markStep(graph.failed, "failed");
  if (stepFilter) stepNode(stepFilter)?.classList.add("selected");
  scheduleDraw();
  // A click on a bar opens the window around its first checkpoint.
  document.getElementById("summary").addEventListener("click", (e) => {
    const bar = e.target.closest(".bar[data-seq]");
    if (bar) location.search = `?seq=${bar.dataset.seq}`;
  });

  const refreshOutcome = async () => {
    const res = await fetch(`${location.pathname}?fragment=outcome`, { headers: { "HX-Request": "true" } });
    if (res.ok) document.getElementById("outcome-wrap").innerHTML = await res.text();
  };
  // Live checkpoints not yet in the last summary fetched: re-applied over a fresh one,
  // which may have been rendered before they were committed.
  let recent = [];
  let refreshing = null;
  const refreshSummary = () => {
    refreshing ??= setTimeout(async () => {
      const res = await fetch(`${location.pathname}?fragment=summary`, { headers: { "HX-Request": "true" } });
      refreshing = null;
      if (!res.ok) return;
      document.getElementById("summary").innerHTML = await res.text();
      gantt = readGantt();
      const known = gantt.bars.reduce((m, b) => Math.max(m, b[5]), 0);
      recent = recent.filter((msg) => msg.seq > known);
      for (const msg of recent) summarise(msg);
      scheduleDraw();
    }, 300);
  };
  const summarise = (msg) => {
    const cell = document.querySelector(`#step-counts li[data-step="${CSS.escape(msg.last_completed_step)}"] .count`);
    const lane = gantt.lanes.indexOf(msg.last_completed_step);
    const end = Date.parse(msg.created_at);
    if (!cell || lane < 0) return refreshSummary();  // a step not seen before: its lane comes with the summary
    cell.textContent = String(parseInt(cell.textContent, 10) + 1);
    if (Number.isNaN(end)) return;
    if (gantt.t0 === null) gantt.t0 = end - msg.duration_ms;
    const retries = (msg.retries || []).map((r) => Number(r.duration_ms) || 0);
    gantt.bars.push([lane, end - msg.duration_ms - gantt.t0, end - gantt.t0, 1, msg.seq, msg.seq, 0, retries]);
    if (++gantt.added > gantt.bins) refreshSummary();  // re-binned by the server: bounded again
    scheduleDraw();
  };
  const showUnseen = (n) => {
    unseen += n;
    const note = document.getElementById("new-checkpoints");
    document.getElementById("new-count").textContent = String(unseen);
    document.getElementById("new-noun").textContent = unseen === 1 ? "checkpoint" : "checkpoints";
    note.hidden = false;
  };
  const insert = (msg) => {
    const el = fromHtml(msg.html);
    el.classList.add("flash-new");
    timeline.prepend(el);
    if (window.htmx) window.htmx.process(el);
    const rows = timeline.querySelectorAll(":scope > .ckpt");
    for (let i = size; i < rows.length; i++) rows[i].remove();
    const oldest = timeline.querySelector(":scope > .ckpt:last-child");
    const older = document.getElementById("older-link");
    if (older && rows.length > size && oldest) {
      const params = new URLSearchParams(stepFilter ? { step: stepFilter } : {});
      params.set("before_seq", oldest.dataset.seq);
      older.href = `?${params}`;
      older.hidden = false;
    }
    document.getElementById("no-checkpoints")?.setAttribute("hidden", "");
  };

  const streams = new StreamView(document.getElementById("streams"), {
    onStep: (step) => markStep(step, "running"),
  });

  connect(`/ws/runs/${runId}/`, (msg) => {
    if (msg.type === "stream") {
      streams.apply(msg);
    } else if (msg.type === "stream_end") {
      streams.ended(msg, lastSeq);
    } else if (msg.type === "checkpoint") {
      if (msg.seq <= lastSeq) return;  // already shown
      lastSeq = msg.seq;
      timeline.dataset.lastSeq = String(lastSeq);
      document.getElementById("run-count").textContent = String(lastSeq);
      markStep(msg.last_completed_step);
      if (status === "running" || status === "queued") {
        for (const step of graph.accepts[msg.output_event_type] || []) markStep(step, "running");
      }
      recent.push(msg);
      if (recent.length > 2 * gantt.bins) recent = recent.slice(-gantt.bins);
      summarise(msg);
      if (!latest) showUnseen(1);
      else if (!stepFilter || stepFilter === msg.last_completed_step) insert(msg);
      streams.checkpointed(msg);
    } else if (msg.type === "skipped") {
      // More arrived while away than one window holds: the newest follow. On the newest
      // window they replace the rows shown; elsewhere they only add to the count.
      if (!latest || stepFilter) showUnseen(msg.count);
      refreshSummary();
    } else if (msg.type === "run") {
      const badge = document.getElementById("run-status");
      badge.textContent = msg.status;
      badge.className = `badge ${msg.status}`;
      if (msg.status !== status) {
        status = msg.status;
        timeline.dataset.status = status;
        if (["succeeded", "failed", "cancelled", "waiting"].includes(status)) {
          settleGraph(status, msg.error);
          streams.clear();
        }
        refreshOutcome();
        refreshSummary();
      }
    }
  }, () => lastSeq, () => streams.clear());
}

// -- runs list --------------------------------------------------------------

// The list's order (newest first by created_at, then id) as a string that compares the same:
// ISO times of one zone with microseconds always present, then the id.
function orderKey(iso, id) {
  const m = /^(.{19})(\.\d+)?(.*)$/.exec(iso || "");
  if (!m) return `${iso}|${id}`;
  const fraction = (m[2] || ".").slice(1).padEnd(6, "0");
  return `${new Date(`${m[1]}${m[3] || "Z"}`).toISOString().slice(0, 19)}.${fraction}|${id}`;
}

function listPage(table) {
  connect("/ws/runs/", (msg) => {
    if (msg.type !== "run") return;
    table = document.getElementById("runs-table") || table;
    const body = document.getElementById("runs-body");
    const existing = document.getElementById(`run-${msg.run_id}`);
    const row = fromHtml(`<table><tbody>${msg.html}</tbody></table>`).querySelector("tr");
    if (existing) {
      existing.replaceWith(row);
      return;
    }
    const wf = table.dataset.filterWorkflow, st = table.dataset.filterStatus;
    // A run's code version is recorded when a worker claims it: new runs do not carry one.
    if (table.dataset.filterCodeVersion) return;
    if (table.dataset.firstPage !== "1" || (wf && wf !== msg.workflow) || (st && st !== msg.status)) return;
    // Only a run newer than every row shown is new: an older one that changed (one of the
    // runs on later pages) belongs where it is, not on top of page 1.
    const top = body.querySelector("tr.run-row");
    if (top && orderKey(msg.created_at, msg.run_id) <= orderKey(top.dataset.created, top.dataset.run)) return;
    body.querySelector("tr.empty")?.remove();
    row.classList.add("flash-new");
    body.prepend(row);
  });
}

const timeline = document.getElementById("timeline");
if (timeline) runPage(timeline);
const runsTable = document.getElementById("runs-table");
if (runsTable) listPage(runsTable);
