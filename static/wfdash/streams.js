// The run page's live streams: a block per running step execution showing the text it has
// streamed so far (an LLM's answer, growing as it is written), with a caret while it runs.
// When the step's checkpoint arrives the block goes, and its text stays under that
// checkpoint's row. Text goes in as text nodes only (never HTML).

const TEXT_LIMIT = 50_000;  // as runs.streams.TEXT_LIMIT: the tail is kept

export class StreamView {
  constructor(container, { onStep } = {}) {
    this.container = container;
    this.onStep = onStep || (() => {});
    this.blocks = new Map();  // execution -> {el, text, end, attempt, step, seq}
  }

  // A "stream" message: `delta` is the text from `offset`; `reset` means it is the text so far.
  apply(msg) {
    let b = this.blocks.get(msg.execution);
    if (b && b.attempt !== msg.attempt) {
      b.el.remove();
      b = null;
    }
    if (!b) {
      if (!msg.reset && msg.offset !== 0) return;  // a gap: the server sends the snapshot
      b = this.make(msg);
    }
    const end = msg.offset + msg.delta.length;
    if (msg.reset) {
      b.text.textContent = msg.delta;
      b.el.classList.toggle("truncated", msg.offset > 0);
      b.end = end;
    } else if (msg.offset <= b.end && end > b.end) {
      b.text.append(msg.delta.slice(b.end - msg.offset));
      b.end = end;
    }
    if (b.text.textContent.length > TEXT_LIMIT) {
      b.text.textContent = b.text.textContent.slice(-TEXT_LIMIT);
      b.el.classList.add("truncated");
    }
    const data = msg.event && msg.event.data;
    if (data && typeof data === "object" && !("delta" in data)) {
      // A step's own event (not a text piece): its newest one, as JSON.
      b.event.textContent = `${msg.event_type} ${JSON.stringify(data)}`;
    }
    b.el.dataset.length = String(b.end);
    this.follow(b);
    this.onStep(msg.step);
  }

  make(msg) {
    const el = document.createElement("div");
    el.className = "stream-block";
    el.id = `stream-${msg.execution}`;
    el.dataset.step = msg.step;
    el.dataset.execution = String(msg.execution);
    const head = document.createElement("div");
    head.className = "stream-head";
    const step = document.createElement("span");
    step.className = "step";
    step.textContent = msg.step;
    const badge = document.createElement("span");
    badge.className = "badge running";
    badge.textContent = "streaming";
    head.append(step, badge);
    if (msg.attempt > 1) {
      const attempt = document.createElement("span");
      attempt.className = "muted";
      attempt.textContent = `attempt ${msg.attempt}`;
      head.append(attempt);
    }
    const pre = document.createElement("pre");
    pre.className = "stream-text";
    const text = document.createElement("span");
    text.className = "text";
    const caret = document.createElement("span");
    caret.className = "caret";
    caret.setAttribute("aria-hidden", "true");
    pre.append(text, caret);
    const event = document.createElement("div");
    event.className = "stream-event mono muted";
    el.append(head, pre, event);
    this.container.append(el);
    const b = { el, text, pre, badge, event, end: 0, attempt: msg.attempt, step: msg.step, seq: undefined };
    this.blocks.set(msg.execution, b);
    return b;
  }

  follow(b) {
    // Keep the newest text in view unless the reader scrolled up.
    const pre = b.pre;
    if (pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40) pre.scrollTop = pre.scrollHeight;
  }

  // A "stream_end" message: the execution's checkpoint is `seq` (null: not known here).
  ended(msg, lastSeq) {
    const b = this.blocks.get(msg.execution);
    if (!b) return;
    b.seq = msg.seq;
    b.el.classList.add("ended");
    b.badge.className = "badge";
    b.badge.textContent = "saving";
    if (msg.seq !== null && msg.seq <= lastSeq) this.finish(msg.execution, msg.seq);
  }

  // A checkpoint arrived: blocks whose stream it ends go, their text under its row.
  checkpointed(msg) {
    for (const [execution, b] of this.blocks) {
      if (b.seq === msg.seq || (b.seq === null && b.step === msg.last_completed_step)) {
        this.finish(execution, msg.seq);
        return;
      }
    }
    for (const [execution, b] of this.blocks) {
      if (b.seq !== undefined && b.seq !== null && b.seq < msg.seq) this.finish(execution, b.seq);
    }
  }

  finish(execution, seq) {
    const b = this.blocks.get(execution);
    if (!b) return;
    this.blocks.delete(execution);
    const row = document.getElementById(`ckpt-${seq}`);
    if (row && !row.querySelector(".streamed-text") && b.text.textContent) {
      const pre = document.createElement("pre");
      pre.className = "streamed-text";
      pre.title = "what this step streamed while it ran";
      pre.textContent = b.text.textContent;
      row.querySelector(".ckpt-head")?.after(pre);
    }
    b.el.remove();
  }

  // The run stopped, or the socket reconnects (its catch-up sends what still streams).
  clear() {
    for (const b of this.blocks.values()) b.el.remove();
    this.blocks.clear();
  }
}
