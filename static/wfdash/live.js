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

function drawGantt(timeline, gantt) {
  const rows = [...timeline.querySelectorAll(".ckpt[data-created]")].map((el) => {
    const end = Date.parse(el.dataset.created);
    const dur = parseFloat(el.dataset.duration) || 0;
    return { step: el.dataset.step, start: end - dur, end };
  });
  gantt.replaceChildren();
  if (!rows.length) return;
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(...rows.map((r) => r.end));
  const span = Math.max(t1 - t0, 1);
  const lanes = new Map();
  for (const r of rows) {
    if (!lanes.has(r.step)) lanes.set(r.step, []);
    lanes.get(r.step).push(r);
  }
  for (const [step, bars] of lanes) {
    const lane = document.createElement("div");
    lane.className = "lane";
    const label = document.createElement("span");
    label.textContent = step;
    const track = document.createElement("div");
    track.className = "track";
    for (const b of bars) {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.left = `${((b.start - t0) / span) * 100}%`;
      bar.style.width = `${((b.end - b.start) / span) * 100}%`;
      bar.title = `${step}: ${(b.end - b.start).toFixed(1)} ms`;
      track.append(bar);
    }
    lane.append(label, track);
    gantt.append(lane);
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
  const gantt = document.getElementById("gantt");
  let lastSeq = parseInt(timeline.dataset.lastSeq || "0", 10);
  let status = timeline.dataset.status;
  for (const el of document.querySelectorAll(".ckpt[data-step]")) markStep(el.dataset.step);
  drawGantt(timeline, gantt);

  const refreshOutcome = async () => {
    const res = await fetch(`${location.pathname}?fragment=outcome`, { headers: { "HX-Request": "true" } });
    if (res.ok) document.getElementById("outcome-wrap").innerHTML = await res.text();
  };

  connect(`/ws/runs/${runId}/`, (msg) => {
    if (msg.type === "checkpoint") {
      if (msg.seq <= lastSeq) return;  // already shown
      const el = fromHtml(msg.html);
      el.classList.add("flash-new");
      timeline.append(el);
      if (window.htmx) window.htmx.process(el);
      lastSeq = msg.seq;
      timeline.dataset.lastSeq = String(lastSeq);
      document.getElementById("no-checkpoints")?.setAttribute("hidden", "");
      document.getElementById("run-count").textContent = String(lastSeq);
      markStep(msg.last_completed_step);
      drawGantt(timeline, gantt);
    } else if (msg.type === "run") {
      const badge = document.getElementById("run-status");
      badge.textContent = msg.status;
      badge.className = `badge ${msg.status}`;
      if (msg.status !== status) {
        status = msg.status;
        timeline.dataset.status = status;
        refreshOutcome();
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
