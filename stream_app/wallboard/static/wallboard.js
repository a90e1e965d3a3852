// The wallboard: one row of tiles per queue, pushed by the server (GET /api/live, server-sent
// events); no polling, no build step, no asset from elsewhere. URL parameters:
//   ?window=interval|15m|1h|today   the window of the windowed figures (default 15m)
//   ?queue=a,b                      only these queues, in this order
//   ?kiosk=1                        no controls (a TV on the wall)
"use strict";

const WINDOWS = { interval: "this interval", "15m": "last 15 minutes", "1h": "last hour", today: "today" };
const params = new URLSearchParams(location.search);
const state = {
  window: WINDOWS[params.get("window")] ? params.get("window") : "15m",
  filter: (params.get("queue") || "").split(",").map((q) => q.trim()).filter(Boolean),
  queues: new Map(), // queue → its latest queue-live record
  agents: new Map(), // agent → its latest agent-status record
  serverStale: new Set(), // queues the server calls stale
  serverLoaded: true, // the server has read the live topics whole
  staleAfterMs: 10000,
  offsetMs: 0, // server clock − this clock
  lastMessage: 0, // performance.now() of the last message (heartbeats included)
  sort: { key: "state", dir: 1 },
};

const $ = (id) => document.getElementById(id);
const serverNow = () => Date.now() + state.offsetMs;
const ms = (iso) => (iso ? Date.parse(iso) : NaN);

// -- formatting ---------------------------------------------------------------------------------
function pct(v, digits) { return v == null ? "—" : (v * 100).toFixed(digits) + "%"; }
function secs(v) {
  if (v == null || Number.isNaN(v)) return "—";
  const s = Math.round(v);
  if (s < 60) return s + " s";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + r : m + ":" + r;
}
function count(v) { return v == null ? "—" : String(v); }

// -- colours against the queue's targets: green, amber near the target, red past it ----------------
// Lower is better (ASA, abandon rate, calls waiting, oldest waiting): red above the target,
// amber above 80% of it. Service level: red below the target, amber within a quarter of the
// way from the target to 100%. No target or no value: no colour.
const NEAR = 0.8;
function lowerBetter(v, target) {
  if (v == null || target == null) return "none";
  if (v > target) return "red";
  return v > target * NEAR ? "amber" : "green";
}
function higherBetter(v, target) {
  if (v == null || target == null) return "none";
  if (v < target) return "red";
  return v < target + (1 - target) * 0.25 ? "amber" : "green";
}

// -- the figures of a row: [key, header-less label, value(record, window), text, level, target text]
function oldestNow(r) {
  if (r.oldest_waiting_seconds == null) return null;
  const asOf = ms(r.as_of);
  const aged = Number.isNaN(asOf) ? 0 : Math.max(0, serverNow() - asOf) / 1000;
  return r.oldest_waiting_seconds + aged; // the record is as of `as_of`: the call waited since
}
function agentsBy(r) {
  const a = r.agents;
  if (!a) return null;
  return {
    available: a.available || 0,
    busy: (a.ringing || 0) + (a.on_call || 0) + (a.after_call_work || 0),
    not_ready: a.not_ready || 0,
  };
}
// Agents: red when calls wait and no agent is available or busy (the critical alert), amber
// when fewer are available or busy than Erlang C requires for the target.
function agentsLevel(v, t, r) {
  if (v == null) return "none";
  const working = v.available + v.busy;
  if (r.calls_waiting && working === 0) return "red";
  if (r.agents_required != null && working < r.agents_required) return "amber";
  return "green";
}
const FIGURES = [
  {
    key: "service_level", value: (r, w) => r.windows?.[w]?.service_level ?? null,
    text: (v) => pct(v, 0), level: (v, t) => higherBetter(v, t.target_service_level),
    target: (t) => "target " + pct(t.target_service_level, 0),
  },
  {
    key: "asa_seconds", value: (r, w) => r.windows?.[w]?.asa_seconds ?? null,
    text: secs, level: (v, t) => lowerBetter(v, t.target_asa_seconds),
    target: (t) => "target " + secs(t.target_asa_seconds),
  },
  {
    key: "calls_waiting", value: (r) => r.calls_waiting ?? null,
    text: count, level: (v, t) => lowerBetter(v, t.max_calls_waiting),
    target: (t) => "max " + t.max_calls_waiting,
  },
  {
    key: "oldest_waiting_seconds", value: oldestNow,
    text: secs, level: (v, t, r) => (r.calls_waiting ? lowerBetter(v, t.max_oldest_waiting_seconds) : "green"),
    target: (t) => "max " + secs(t.max_oldest_waiting_seconds),
  },
  {
    // A caller joining now: against the service level's threshold (answered within it).
    key: "expected_wait_seconds", value: (r) => r.expected_wait_seconds ?? null,
    text: secs, level: (v, t) => lowerBetter(v, t.service_level_seconds),
    target: (t) => "limit " + secs(t.service_level_seconds),
  },
  {
    key: "abandon_rate", value: (r, w) => r.windows?.[w]?.abandon_rate ?? null,
    text: (v) => pct(v, 1), level: (v, t) => lowerBetter(v, t.target_abandon_rate),
    target: (t) => "target " + pct(t.target_abandon_rate, 0),
  },
  {
    key: "agents", value: agentsBy,
    text: (v) => (v == null ? "—" : v.available + " / " + v.busy + " / " + v.not_ready),
    level: agentsLevel,
    target: (t, r) => (r?.agents_required == null ? "" : "need " + r.agents_required),
  },
  {
    key: "occupancy", value: (r, w) => r.windows?.[w]?.occupancy ?? null,
    text: (v) => pct(v, 0), level: (v, t) => lowerBetter(v, t.max_occupancy),
    target: (t) => "max " + pct(t.max_occupancy, 0),
  },
];

// -- the board ----------------------------------------------------------------------------------
const rows = new Map(); // queue → <tr>

function shownQueues() {
  if (state.filter.length) return state.filter.filter((q) => state.queues.has(q));
  return [...state.queues.keys()].sort();
}

function makeRow(queue) {
  const tr = document.createElement("tr");
  tr.dataset.queue = queue;
  const name = document.createElement("td");
  name.className = "name";
  name.textContent = queue;
  tr.appendChild(name);
  for (const figure of FIGURES) {
    const td = document.createElement("td");
    td.dataset.figure = figure.key;
    const tile = document.createElement("div");
    tile.className = "tile";
    const value = document.createElement("span");
    value.className = "value";
    const target = document.createElement("span");
    target.className = "target";
    tile.append(value, target);
    td.appendChild(tile);
    tr.appendChild(td);
  }
  return tr;
}

function renderRow(queue) {
  const record = state.queues.get(queue);
  let tr = rows.get(queue);
  if (!tr) { tr = makeRow(queue); rows.set(queue, tr); }
  const targets = record.targets || {};
  tr.querySelectorAll("td[data-figure]").forEach((td, i) => {
    const figure = FIGURES[i];
    const v = figure.value(record, state.window);
    td.querySelector(".value").textContent = figure.text(v);
    td.querySelector(".target").textContent = figure.target(targets, record);
    td.dataset.value = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    td.dataset.level = figure.level(v, targets, record);
    td.dataset.past = figure.key === "service_level" ? "below" : "above"; // the way a breach goes
  });
  tr.classList.toggle("stale-row", isQueueStale(queue));
}

function renderBoard() {
  const body = $("queues");
  const wanted = shownQueues();
  for (const [queue, tr] of rows) if (!wanted.includes(queue)) { tr.remove(); rows.delete(queue); }
  wanted.forEach((queue) => { renderRow(queue); body.appendChild(rows.get(queue)); });
  $("empty").hidden = wanted.length > 0;
}

// -- staleness: the server's view (a queue's owner went quiet), and ours (the server did) -----------
function connectionSilent() { return performance.now() - state.lastMessage > state.staleAfterMs; }
function isQueueStale(queue) {
  return connectionSilent() || !state.serverLoaded || state.serverStale.has(queue);
}
function renderStale() {
  const any = connectionSilent() || !state.serverLoaded || shownQueues().some((q) => state.serverStale.has(q));
  $("stale").hidden = !any;
  document.body.classList.toggle("is-stale", any);
  for (const [queue, tr] of rows) tr.classList.toggle("stale-row", isQueueStale(queue));
}

// -- agents (agent-status records; none until something publishes them) ---------------------------
function renderAgents() {
  const tbody = $("agents").querySelector("tbody");
  const list = [...state.agents.values()];
  $("no-agents").hidden = list.length > 0;
  $("agents").hidden = list.length === 0;
  const { key, dir } = state.sort;
  const val = (a) => (key === "since" ? -(ms(a.since) || 0) : String(a[key] ?? ""));
  list.sort((a, b) => (val(a) < val(b) ? -dir : val(a) > val(b) ? dir : String(a.agent_id).localeCompare(String(b.agent_id))));
  tbody.replaceChildren(...list.map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.agent_id;
    const since = ms(a.since);
    const cells = [
      a.agent_id,
      a.state + (a.reason ? " (" + a.reason + ")" : ""),
      Number.isNaN(since) ? "—" : secs(Math.max(0, serverNow() - since) / 1000),
      a.queue ?? "—",
    ];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
    return tr;
  }));
  $("agents").querySelectorAll("th").forEach((th) => {
    th.setAttribute("aria-sort", th.dataset.sort === key ? (dir > 0 ? "ascending" : "descending") : "none");
  });
}

// -- controls -----------------------------------------------------------------------------------
function setWindow(window) {
  state.window = window;
  params.set("window", window);
  history.replaceState(null, "", "?" + params.toString());
  document.querySelectorAll("#windows button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.window === window)));
  $("window-label").textContent = WINDOWS[window];
  renderBoard();
}

// -- the stream ---------------------------------------------------------------------------------
function heard(data) {
  state.lastMessage = performance.now();
  if (typeof data.now === "number") state.offsetMs = data.now - Date.now();
  if (Array.isArray(data.stale)) state.serverStale = new Set(data.stale);
  if (typeof data.loaded === "boolean") state.serverLoaded = data.loaded;
}

function connect() {
  const source = new EventSource("/api/live");
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    if (data.stale_after_ms) state.staleAfterMs = data.stale_after_ms;
    heard(data);
    // A server still reading the topics (it just started) knows part of the centre: what the
    // page holds stays, stale, until the server has read them whole.
    if (data.loaded) { state.queues = new Map(); state.agents = new Map(); }
    data.queues.forEach((r) => state.queues.set(r.queue, r));
    data.agents.forEach((a) => state.agents.set(a.agent_id, a));
    renderBoard(); renderAgents(); renderStale();
  });
  source.addEventListener("heartbeat", (e) => { heard(JSON.parse(e.data)); renderStale(); });
  source.addEventListener("queue", (e) => {
    const record = JSON.parse(e.data);
    state.lastMessage = performance.now();
    state.serverStale.delete(record.queue); // a record just came: its owner is alive
    const known = state.queues.has(record.queue);
    state.queues.set(record.queue, record);
    if (known && rows.has(record.queue)) renderRow(record.queue); else renderBoard();
    renderStale();
  });
  source.addEventListener("queue_removed", (e) => { state.queues.delete(JSON.parse(e.data).key); renderBoard(); });
  source.addEventListener("agent", (e) => {
    const record = JSON.parse(e.data);
    state.lastMessage = performance.now();
    state.agents.set(record.agent_id, record);
    renderAgents();
  });
  source.addEventListener("agent_removed", (e) => { state.agents.delete(JSON.parse(e.data).key); renderAgents(); });
  // On an error EventSource reconnects by itself (the server asks for 2 s); a closed one is renewed.
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000); };
}

function everySecond() {
  $("clock").textContent = new Date(serverNow()).toLocaleTimeString();
  for (const queue of rows.keys()) {
    const record = state.queues.get(queue);
    if (record && record.calls_waiting) renderRow(queue); // the oldest call ages
  }
  if (state.agents.size) renderAgents();
  renderStale();
}

if (params.get("kiosk") === "1") document.body.classList.add("kiosk");
document.querySelectorAll("#windows button").forEach((b) => b.addEventListener("click", () => setWindow(b.dataset.window)));
$("agents").querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
  state.sort = { key: th.dataset.sort, dir: state.sort.key === th.dataset.sort ? -state.sort.dir : 1 };
  renderAgents();
}));
setWindow(state.window);
renderAgents();
state.lastMessage = performance.now();
connect();
setInterval(everySecond, 1000);
