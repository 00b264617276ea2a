// Live updates over WebSocket: the run page's timeline, Gantt and graph; the runs list.
// Every checkpoint is applied exactly once: the page keeps the last seq it has and
// reconnects with ?after=<seq>, dropping any seq it already holds.

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

function connect(path, onMessage, cursor) {
  let delay = 250;
  const open = () => {
    const ws = new WebSocket(wsUrl(cursor ? `${path}?after=${cursor()}` : path));
    ws.onopen = () => { delay = 250; document.body.dataset.live = "connected"; };
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

function drawGantt(data, gantt) {
  gantt.replaceChildren();
  if (!data.bars.length) return;
  let t1 = 0, tmin = 0;
  for (const b of data.bars) { t1 = Math.max(t1, b[2]); tmin = Math.min(tmin, b[1]); }
  const span = Math.max(t1 - tmin, 1);
  const tracks = data.lanes.map((step) => {
    const lane = document.createElement("div");
    lane.className = "lane";
    const label = document.createElement("span");
    label.textContent = step;
    const track = document.createElement("div");
    track.className = "track";
    lane.append(label, track);
    gantt.append(lane);
    return track;
  });
  for (const [lane, start, end, n, first, last] of data.bars) {
    const bar = document.createElement("div");
    bar.className = n > 1 ? "bar binned" : "bar";
    bar.style.left = `${((start - tmin) / span) * 100}%`;
    bar.style.width = `${((end - start) / span) * 100}%`;
    bar.dataset.seq = String(first);
    const what = n > 1 ? `${n} checkpoints #${first}–#${last}` : `#${first}, ${(end - start).toFixed(1)} ms`;
    bar.title = `${data.lanes[lane]}: ${what}`;
    tracks[lane].append(bar);
  }
  const axis = document.createElement("div");
  axis.className = "axis";
  axis.innerHTML = `<span>0</span><span>${span < 2000 ? span.toFixed(0) + " ms" : (span / 1000).toFixed(2) + " s"}</span>`;
  gantt.append(axis);
}

function markStep(step) {
  for (const node of document.querySelectorAll(".wf-graph .node.step")) {
    if (node.dataset.step === step) node.classList.add("done");
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
  for (const el of document.querySelectorAll(".ckpt[data-step]")) markStep(el.dataset.step);
  for (const li of document.querySelectorAll("#step-counts li[data-step]")) markStep(li.dataset.step);
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
    gantt.bars.push([lane, end - msg.duration_ms - gantt.t0, end - gantt.t0, 1, msg.seq, msg.seq]);
    if (++gantt.added > gantt.bins) refreshSummary();  // re-binned by the server: bounded again
    scheduleDraw();
  };
  const showUnseen = (n) => {
    unseen += n;
    const note = document.getElementById("new-checkpoints");
    document.getElementById("new-count").textContent = String(unseen);
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

  connect(`/ws/runs/${runId}/`, (msg) => {
    if (msg.type === "checkpoint") {
      if (msg.seq <= lastSeq) return;  // already shown
      lastSeq = msg.seq;
      timeline.dataset.lastSeq = String(lastSeq);
      document.getElementById("run-count").textContent = String(lastSeq);
      markStep(msg.last_completed_step);
      recent.push(msg);
      if (recent.length > 2 * gantt.bins) recent = recent.slice(-gantt.bins);
      summarise(msg);
      if (!latest) showUnseen(1);
      else if (!stepFilter || stepFilter === msg.last_completed_step) insert(msg);
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
        refreshOutcome();
        refreshSummary();
      }
    }
  }, () => lastSeq);
}

// -- runs list --------------------------------------------------------------

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
    if (table.dataset.firstPage !== "1" || (wf && wf !== msg.workflow) || (st && st !== msg.status)) return;
    body.querySelector("tr.empty")?.remove();
    row.classList.add("flash-new");
    body.prepend(row);
  });
}

const timeline = document.getElementById("timeline");
if (timeline) runPage(timeline);
const runsTable = document.getElementById("runs-table");
if (runsTable) listPage(runsTable);
