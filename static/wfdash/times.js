// Times in the reader's own zone: each <time datetime> reads "3 min ago", with the exact
// local time (and its zone) on hover; [data-elapsed-since] counts a running run's duration.
// Loaded on every page; rows that arrive live or by htmx are picked up too.
const units = [
  ["year", 365 * 24 * 3600], ["month", 30 * 24 * 3600], ["day", 24 * 3600],
  ["hour", 3600], ["minute", 60], ["second", 1],
];
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const exact = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

function ago(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

function elapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function render(root) {
  for (const el of root.querySelectorAll("time[datetime]:not([data-keep])")) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    el.textContent = ago(date);
    el.title = exact.format(date);
  }
  for (const el of root.querySelectorAll("[data-elapsed-since]")) {
    const since = new Date(el.dataset.elapsedSince);
    if (!Number.isNaN(since.getTime())) el.textContent = elapsed(Date.now() - since.getTime());
  }
}

render(document);
setInterval(() => render(document), 1000);
new MutationObserver((changes) => {
  for (const change of changes) {
    for (const node of change.addedNodes) if (node.nodeType === 1) render(node.parentNode || node);
  }
}).observe(document.body, { childList: true, subtree: true });
