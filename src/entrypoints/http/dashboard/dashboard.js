// The taskcore dashboard: polls GET /stats every two seconds and draws it,
// with GET /queues for a caller allowed to see them (tasks:admin).
// No library and nothing from another origin: the page must work offline,
// and its Content-Security-Policy allows only this server. Text from the API
// (errors, types, worker names) only ever goes in through textContent.
"use strict";

(() => {
  const TOKEN_KEY = "taskcore.token";
  const POLL_MS = 2000;
  const STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let refreshing = false;
  let again = false; // a refresh was asked for while one ran: run another after it
  const rendered = {}; // table id -> the data it shows, to skip redrawing what did not change
  const queues = {
    allowed: true, // false once GET /queues refused the token (401, 403): not asked again until it changes
    list: null, // the queues shown, as GET /queues lists them; null while the panel is hidden
    epoch: 0, // moves on with each pause or resume: a listing asked for before one is not shown after it
    busy: new Set(), // names of the queues with a pause or resume under way
    rows: new Map(), // name -> the row's elements, kept across refreshes (a focused button stays focused)
  };

  // --- the API ---------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  // A refused call: its HTTP status, a sentence for the status line, and the
  // RFC 9457 problem the API answered with (null if the answer was not one).
  class ApiError extends Error {
    constructor(status, message, problem) {
      super(message);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    if (token()) headers.authorization = `Bearer ${token()}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : null;
    if (!response.ok) throw new ApiError(response.status, explain(response.status, data), data);
    return data;
  }

  function explain(status, problem) {
    const detail = (problem && (problem.detail || problem.title)) || "";
    if (status === 401) return `not signed in: ${detail || "a bearer token is required"}; paste a token above`;
    if (status === 403) return `not allowed: ${detail || "the token lacks a scope"}`;
    if (status === 503) return `the service is unavailable: ${detail}`;
    return `${status}${detail ? `: ${detail}` : ""}`;
  }

  // What tasks.js (the task browser) uses of this file: one API client, one
  // status line, one token. ``admin``: the last /stats counted every owner's tasks.
  const shared = { api, ApiError, setStatus, token, admin: false };
  window.taskcore = shared;

  // --- formatting ------------------------------------------------------------

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 60) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
    return `${(value / 60).toFixed(1)} min`;
  }

  function ago(iso, now) {
    const s = Math.max(0, (now - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  }

  function number(value) {
    return value === null ? "?" : String(value);
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // The last refresh in #status; the last action (a retry) in #notice, which refreshes leave alone.
  function setStatus(text, kind, id = "status") {
    const status = $(id);
    status.textContent = text;
    status.className = kind || "";
  }

  // --- rendering -------------------------------------------------------------

  function render(stats) {
    const now = Date.parse(stats.at);
    $("scope").textContent = stats.owner === null ? "all tasks" : `tasks of ${stats.owner}`;
    shared.admin = stats.owner === null; // sees every owner's tasks: the browser offers the owner filter
    document.dispatchEvent(new Event("taskcore:scope"));
    for (const status of STATUSES) $(`count-${status}`).textContent = String(stats.counts[status]);
    const queue = stats.queue;
    $("queue-ready").textContent = queue ? number(queue.ready) : "–";
    $("queue-dead").textContent = queue ? number(queue.dead_letters) : "–";
    for (const el of document.querySelectorAll(".window")) el.textContent = String(stats.minutes.length);
    drawThroughput($("throughput-chart"), stats.minutes);
    drawLatency($("latency-chart"), stats.minutes);
    renderFailures(stats.failures);
    renderWorkers(stats, now);
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }

  function unchanged(id, data) {
    const key = JSON.stringify(data);
    if (rendered[id] === key) return true;
    rendered[id] = key;
    return false;
  }

  // A task's type with its tags after it, each as a small label.
  function typeWithTags(task) {
    const cell = document.createElement("span");
    cell.append(task.type);
    for (const tag of task.tags || []) {
      const label = document.createElement("span");
      label.className = "tag";
      label.textContent = tag;
      cell.append(" ", label);
    }
    return cell;
  }

  function renderFailures(failures) {
    $("failures-empty").hidden = failures.length > 0;
    if (unchanged("failures", failures)) return;
    const body = $("failures").tBodies[0];
    body.replaceChildren(
      ...failures.map((task) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "retry";
        button.textContent = "Retry";
        button.addEventListener("click", () => retry(task.id, button));
        const error = document.createElement("span");
        error.className = "error";
        error.textContent = task.error || "";
        error.title = task.error || "";
        const tr = row([`#${task.id}`, typeWithTags(task), error, `${task.attempts}/${task.max_attempts}`,
          task.finished_at ? clock(task.finished_at) : "", button]);
        tr.dataset.taskId = String(task.id);
        return tr;
      }),
    );
  }

  function renderWorkers(stats, now) {
    const workers = stats.workers;
    $("workers-window").textContent = `seen in the last ${Math.round(stats.workers_seen_s)} s`;
    const empty = $("workers-empty");
    const body = $("workers").tBodies[0];
    if (workers === null) {
      body.replaceChildren();
      rendered.workers = null;
      empty.hidden = false;
      empty.textContent = "Visible with the tasks:admin scope.";
      return;
    }
    empty.hidden = workers.length > 0;
    empty.textContent = "No worker has reported recently.";
    // Redrawn every time: "seen N s ago" moves on even when nothing else does.
    body.replaceChildren(
      ...workers.map((w) => {
        const tr = row([w.id, ago(w.started_at, now), ago(w.seen_at, now), String(w.in_flight), String(w.processed)]);
        tr.dataset.workerId = w.id;
        return tr;
      }),
    );
  }

  // --- queues: updated in place, so a button keeps its focus while the numbers move ------

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function queueRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.queue = name;
    const header = document.createElement("th");
    header.scope = "row";
    header.textContent = name;
    const state = document.createElement("span");
    const counts = [0, 1, 2, 3, 4].map(() => document.createElement("td"));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "queue-action";
    button.addEventListener("click", () => pauseOrResume(name));
    const stateCell = document.createElement("td");
    const buttonCell = document.createElement("td");
    stateCell.append(state);
    buttonCell.append(button);
    tr.append(header, stateCell, ...counts, buttonCell);
    return { tr, state, counts, button };
  }

  function showQueues(list) {
    queues.list = list;
    const body = $("queues").tBodies[0];
    const names = list.map((q) => q.name);
    if (names.join("\n") !== [...queues.rows.keys()].join("\n")) {
      const old = queues.rows;
      queues.rows = new Map(names.map((name) => [name, old.get(name) || queueRow(name)]));
      body.replaceChildren(...[...queues.rows.values()].map((r) => r.tr));
    }
    for (const q of list) {
      const r = queues.rows.get(q.name);
      const state = q.paused ? "paused" : "running";
      const verb = q.paused ? "Resume" : "Pause";
      r.tr.classList.toggle("paused", q.paused);
      setText(r.state, state);
      r.state.className = `state ${state}`;
      [q.waiting, q.running, q.scheduled, q.ready, q.dead_letters].forEach((value, i) =>
        setText(r.counts[i], number(value)),
      );
      setText(r.button, verb);
      r.button.setAttribute("aria-label", `${verb} queue ${q.name}`);
      r.button.disabled = queues.busy.has(q.name);
    }
    $("queues-panel").hidden = false;
  }

  function hideQueues() {
    $("queues-panel").hidden = true;
    $("queues").tBodies[0].replaceChildren();
    queues.rows = new Map();
    queues.list = null;
  }

  // --- charts: a few SVG shapes, scaled by hand --------------------------------

  const HEIGHT = 180;
  const PAD = { left: 44, right: 10, top: 10, bottom: 22 };

  function el(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // About four grid steps of 1, 2, 2.5 or 5 times a power of ten, whole ones for counts.
  function yScale(max, whole) {
    const high = max > 0 ? max : whole ? 4 : 1;
    const raw = high / 4;
    const power = 10 ** Math.floor(Math.log10(raw));
    const steps = [1, 2, 2.5, 5, 10].map((s) => s * power).filter((s) => !whole || Number.isInteger(s));
    const step = Math.max(whole ? 1 : 0, steps.find((s) => s >= raw) || 10 * power);
    const count = Math.max(1, Math.ceil(high / step - 1e-9));
    return { top: step * count, step, count };
  }

  // The frame: axes, grid lines with labels, a time label every five minutes.
  function frame(container, minutes, y, label) {
    const top = y.top;
    const width = Math.max(container.clientWidth, 320);
    const svg = el("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT });
    const plot = { x: PAD.left, y: PAD.top, w: width - PAD.left - PAD.right, h: HEIGHT - PAD.top - PAD.bottom };
    for (let i = 0; i <= y.count; i++) {
      const at = plot.y + plot.h - (plot.h * i) / y.count;
      svg.append(el("line", { x1: plot.x, x2: plot.x + plot.w, y1: at, y2: at, class: i ? "grid" : "axis" }));
      svg.append(el("text", { x: plot.x - 6, y: at + 4, class: "tick", "text-anchor": "end" }, label(y.step * i)));
    }
    const slot = plot.w / minutes.length;
    minutes.forEach((m, i) => {
      if ((minutes.length - 1 - i) % 5 === 0) {
        svg.append(el("text", { x: plot.x + slot * (i + 0.5), y: HEIGHT - 6, class: "tick", "text-anchor": "middle" },
          clock(m.minute)));
      }
    });
    container.replaceChildren(svg);
    return { svg, plot, slot, scale: (v) => plot.y + plot.h - (plot.h * v) / top };
  }

  function drawThroughput(container, minutes) {
    const y = yScale(Math.max(...minutes.map((m) => Math.max(m.completed, m.failed))), true);
    const { svg, plot, slot, scale } = frame(container, minutes, y, String);
    const bar = Math.max(1, slot * 0.36);
    minutes.forEach((m, i) => {
      const x = plot.x + slot * i + slot * 0.12;
      [["completed", m.completed], ["failed", m.failed]].forEach(([kind, value], j) => {
        if (!value) return;
        const at = scale(value);
        const rect = el("rect", { x: x + j * bar, y: at, width: bar, height: plot.y + plot.h - at, class: `bar ${kind}` });
        rect.append(el("title", {}, `${clock(m.minute)}: ${value} ${kind}`));
        svg.append(rect);
      });
    });
  }

  const LATENCY = [
    ["wait_p50_s", "wait50", "queue wait p50"],
    ["wait_p95_s", "wait95", "queue wait p95"],
    ["run_p50_s", "run50", "run time p50"],
    ["run_p95_s", "run95", "run time p95"],
  ];

  function drawLatency(container, minutes) {
    const values = minutes.flatMap((m) => LATENCY.map(([key]) => m[key])).filter((v) => v !== null);
    const { svg, plot, slot, scale } = frame(container, minutes, yScale(Math.max(0, ...values), false), seconds);
    const dots = [];
    for (const [key, kind, name] of LATENCY) {
      let path = "";
      let pen = false;
      minutes.forEach((m, i) => {
        const value = m[key];
        if (value === null) {
          pen = false; // a minute with no finished task breaks the line
          return;
        }
        const x = plot.x + slot * (i + 0.5);
        const y = scale(value);
        path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
        pen = true;
        const dot = el("circle", { cx: x, cy: y, r: 3, class: `dot ${kind}` });
        dot.append(el("title", {}, `${clock(m.minute)}: ${name} ${seconds(value)}`));
        dots.push(dot);
      });
      if (path) svg.append(el("path", { d: path, class: `line ${kind}` }));
    }
    svg.append(...dots); // over every line, so each keeps its tooltip
  }

  // --- actions ---------------------------------------------------------------

  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    const epoch = queues.epoch;
    try {
      const [stats, listed] = await Promise.allSettled([
        api("GET", "/stats"),
        queues.allowed ? api("GET", "/queues") : Promise.resolve(null),
      ]);
      // After a pause, a resume or another token, a listing asked for before it is stale: the next one counts.
      const current = epoch === queues.epoch;
      let trouble = null;
      if (current && listed.status === "fulfilled") {
        if (listed.value) showQueues(listed.value.items);
      } else if (current && [401, 403].includes(listed.reason.status)) {
        queues.allowed = false; // not this caller's to see: hidden quietly
        hideQueues();
      } else if (current) {
        trouble = `queues: ${listed.reason.message}`; // the panel keeps the last listing
      }
      if (stats.status === "rejected") throw stats.reason;
      render(stats.value);
      if (trouble) setStatus(trouble, "error");
      else setStatus(`updated ${new Date().toLocaleTimeString()}`, "ok");
    } catch (error) {
      setStatus(error.message, "error");
    } finally {
      refreshing = false;
    }
    if (again) {
      again = false;
      await refresh();
    }
  }

  async function tick() {
    if (!document.hidden) await refresh(); // on every view: the header's scope and status line are global
    timer = setTimeout(tick, POLL_MS);
  }

  async function retry(id, button) {
    button.disabled = true;
    try {
      const task = await api("POST", `/tasks/${id}/retry`);
      setStatus(`task #${id} retried: ${task.status}`, "ok", "notice");
    } catch (error) {
      button.disabled = false;
      setStatus(`retry of #${id} failed: ${error.message}`, "error", "notice");
      return;
    }
    await refresh();
  }

  async function pauseOrResume(name) {
    const queue = queues.list && queues.list.find((q) => q.name === name);
    if (!queue || queues.busy.has(name)) return;
    const action = queue.paused ? "resume" : "pause";
    queues.busy.add(name);
    showQueues(queues.list); // its button disabled while the request runs
    try {
      const state = await api("POST", `/queues/${encodeURIComponent(name)}/${action}`);
      queues.epoch += 1;
      if (queues.list) queues.list = queues.list.map((q) => (q.name === state.name ? state : q));
      setStatus(`queue ${name} ${state.paused ? "paused" : "resumed"}`, "ok", "notice");
    } catch (error) {
      setStatus(`${action} of queue ${name} failed: ${error.message}`, "error", "notice");
    } finally {
      queues.busy.delete(name);
      if (queues.list) showQueues(queues.list);
    }
    await refresh();
  }

  async function submit(event) {
    event.preventDefault();
    const raw = $("submit-input").value;
    let input;
    try {
      input = JSON.parse(raw);
    } catch {
      input = raw; // plain text is a string input
    }
    const result = $("submit-result");
    try {
      const task = await api("POST", "/tasks/", { type: $("submit-type").value, input_data: input });
      result.textContent = `submitted #${task.id}`;
    } catch (error) {
      result.textContent = error.message;
    }
    await refresh();
  }

  function showToken() {
    $("token-state").textContent = token() ? "a token is set for this tab" : "no token";
  }

  // Another token may see other things: the queues are hidden until GET /queues answers it.
  function tokenChanged() {
    shared.admin = false;
    document.dispatchEvent(new Event("taskcore:token"));
    queues.allowed = true;
    queues.epoch += 1;
    hideQueues();
    showToken();
    refresh();
  }

  function useToken(event) {
    event.preventDefault();
    const value = $("token").value.trim().replace(/^bearer\s+/i, "");
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    tokenChanged();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenChanged();
  }

  // --- schedules: a read-only panel of GET /schedules, polled on its own -----------------

  const SCHEDULES_POLL_MS = 5000;

  function when(s) {
    return s.cron ? `${s.cron} (${s.timezone})` : `every ${s.every_s} s`;
  }

  function showSchedules(items) {
    const rows = items.map((s) => {
      const tr = document.createElement("tr");
      const state = s.retired_at ? "retired" : s.paused ? "paused" : "active";
      const next = state === "active" && s.next_fire_at ? new Date(s.next_fire_at).toLocaleString() : "–";
      const last = s.last_fire_at ? new Date(s.last_fire_at).toLocaleString() : "never";
      for (const text of [s.name, s.type, when(s), state, next, last, s.error || ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    $("schedules").tBodies[0].replaceChildren(...rows);
    $("schedules-panel").hidden = items.length === 0;
  }

  async function pollSchedules() {
    if (!document.hidden) {
      try {
        showSchedules((await api("GET", "/schedules")).items);
      } catch {
        $("schedules-panel").hidden = true; // not this caller's to see, or the API is away: /stats says which
      }
    }
    setTimeout(pollSchedules, SCHEDULES_POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", pollSchedules);

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", useToken);
    $("forget-token").addEventListener("click", forgetToken);
    $("submit-form").addEventListener("submit", submit);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refresh();
    });
    showToken();
    tick();
  });
})();
