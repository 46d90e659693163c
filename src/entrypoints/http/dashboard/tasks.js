// The task browser: a filtered, keyset-paged table of tasks (GET /tasks) and a
// page per task (GET /tasks/{id}/detail, its workflow from GET /workflows/{id})
// with Cancel and Re-queue buttons. Hash routes, so a reload or a shared link
// keeps the view: #/ (the overview), #/tasks?status=&type=&queue=&tag=&owner=
// &limit=&cursor=, #/tasks/<id>. Uses dashboard.js's API client
// (window.taskcore). Everything the API says (inputs, results, errors, names)
// goes in through textContent only: a task's input is data, never markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FILTERS = ["status", "type", "queue", "tag", "owner"];
  const DEFAULT_LIMIT = "25";
  const POLL_MS = 2000;
  const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];
  const OUTCOMES = {
    COMPLETED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled while it ran",
    ABANDONED: "abandoned: its lease lapsed",
    HANDED_BACK: "handed back: its worker shut down",
  };

  const list = {
    epoch: 0, // moves on with each load: an answer to an older one is dropped
    key: null, // the filters of the pages in ``before``
    before: [], // the cursors of the pages before this one ("" for the first), for Previous
    cursor: "",
    next: null,
  };
  const page = { id: null, epoch: 0, timer: null, shown: null, task: null, busy: false };

  // --- routes ------------------------------------------------------------------

  function parse() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query = ""] = hash.split("?");
    const found = /^\/tasks\/(\d{1,19})\/?$/.exec(path);
    if (found) return { view: "task", id: found[1] };
    if (/^\/tasks\/?$/.test(path)) return { view: "tasks", params: new URLSearchParams(query) };
    if (/^\/tasks\//.test(path)) return { view: "task", id: null }; // not a task id: said so on the page
    return { view: "overview" };
  }

  function route() {
    const where = parse();
    for (const view of ["overview", "tasks", "task"]) $(`view-${view}`).hidden = view !== where.view;
    for (const [link, view] of [["nav-overview", "overview"], ["nav-tasks", "tasks"]]) {
      const current = where.view === view || (view === "tasks" && where.view === "task");
      if (current) $(link).setAttribute("aria-current", "page");
      else $(link).removeAttribute("aria-current");
    }
    if (where.view !== "task") stopTask();
    if (where.view === "tasks") showList(where.params);
    if (where.view === "task") openTask(where.id);
  }

  // --- the problems the API answers with (RFC 9457), as the user sees them --------

  function showProblem(box, error, lead) {
    const problem = (error && error.problem) || null;
    const title = document.createElement("strong");
    const status = error && error.status ? `${error.status} ` : "";
    title.textContent = lead || `${status}${(problem && problem.title) || "the request failed"}`;
    const parts = [title];
    const detail = problem && problem.detail ? problem.detail : error && !problem ? error.message : "";
    if (detail) {
      const p = document.createElement("p");
      p.textContent = detail;
      parts.push(p);
    }
    if (problem && Array.isArray(problem.errors) && problem.errors.length) {
      const ul = document.createElement("ul");
      for (const item of problem.errors) {
        const li = document.createElement("li");
        const where = item && (item.key || item.source) ? `${item.key || item.source}: ` : "";
        li.textContent = `${where}${(item && item.message) || JSON.stringify(item)}`;
        ul.append(li);
      }
      parts.push(ul);
    }
    if (error && error.status === 401) parts.push(note("Paste a token above."));
    if (error && error.status === 403) parts.push(note("The token lacks a scope this needs."));
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = text;
    return p;
  }

  function hideProblem(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  // --- formatting ----------------------------------------------------------------

  // UTC to the millisecond: the order of a timeline's events is what matters.
  function stamp(iso) {
    if (!iso) return "–";
    return `${new Date(iso).toISOString().replace("T", " ").replace("Z", "")} UTC`;
  }

  function span(from, to) {
    const s = (Date.parse(to) - Date.parse(from)) / 1000;
    if (!(s >= 0)) return "";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 120) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    return `${(s / 60).toFixed(1)} min`;
  }

  function json(value) {
    return value === undefined ? "" : JSON.stringify(value, null, 2);
  }

  function short(text, length = 80) {
    return text.length > length ? `${text.slice(0, length - 1)}…` : text;
  }

  function badge(status) {
    const node = document.createElement("span");
    node.className = `status ${String(status).toLowerCase()}`;
    node.textContent = status;
    return node;
  }

  function taskLink(id, text) {
    const a = document.createElement("a");
    a.href = `#/tasks/${encodeURIComponent(String(id))}`;
    a.textContent = text || `#${id}`;
    return a;
  }

  function cells(values) {
    const tr = document.createElement("tr");
    for (const value of values) {
      const td = document.createElement("td");
      if (value instanceof Node) td.append(value);
      else td.textContent = value;
      tr.append(td);
    }
    return tr;
  }

  // --- the table -------------------------------------------------------------------

  function filtersOf(params) {
    const filters = {};
    for (const name of FILTERS) {
      const value = (params.get(name) || "").trim();
      if (value) filters[name] = value;
    }
    const limit = params.get("limit");
    filters.limit = /^\d{1,3}$/.test(limit || "") ? limit : DEFAULT_LIMIT;
    return filters;
  }

  function listHash(filters, cursor) {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
    if (filters.limit && filters.limit !== DEFAULT_LIMIT) params.set("limit", filters.limit);
    if (cursor) params.set("cursor", cursor);
    const query = params.toString();
    return `#/tasks${query ? `?${query}` : ""}`;
  }

  function formFilters() {
    const filters = { limit: $("filter-limit").value };
    for (const name of FILTERS) {
      const value = $(`filter-${name}`).value.trim();
      if (value && (name !== "owner" || window.taskcore.admin)) filters[name] = value;
    }
    return filters;
  }

  function fillForm(filters) {
    for (const name of FILTERS) $(`filter-${name}`).value = filters[name] || "";
    $("filter-limit").value = filters.limit;
  }

  function showList(params) {
    const filters = filtersOf(params);
    const cursor = params.get("cursor") || "";
    const key = JSON.stringify(filters);
    if (key !== list.key) {
      list.key = key;
      list.before = [];
    } else if (list.before.length && list.before[list.before.length - 1] === cursor) {
      list.before.pop(); // back a page (Previous, or the browser's Back)
    }
    list.cursor = cursor;
    fillForm(filters);
    showOwnerFilter();
    loadList(filters, cursor);
  }

  async function loadList(filters, cursor) {
    const epoch = ++list.epoch;
    const query = new URLSearchParams();
    for (const name of FILTERS) if (filters[name]) query.set(name, filters[name]);
    query.set("limit", filters.limit);
    if (cursor) query.set("cursor", cursor);
    $("tasks-loading").hidden = false;
    $("tasks").setAttribute("aria-busy", "true");
    for (const id of ["page-next", "page-prev", "page-first"]) $(id).disabled = true;
    try {
      const data = await window.taskcore.api("GET", `/tasks?${query}`);
      if (epoch !== list.epoch) return;
      hideProblem($("tasks-problem"));
      renderList(data);
    } catch (error) {
      if (epoch !== list.epoch) return;
      showProblem($("tasks-problem"), error);
      $("tasks").tBodies[0].replaceChildren();
      $("tasks-empty").hidden = true;
      list.next = null;
      pager();
    } finally {
      if (epoch === list.epoch) {
        $("tasks-loading").hidden = true;
        $("tasks").removeAttribute("aria-busy");
      }
    }
  }

  function renderList(data) {
    list.next = data.next_cursor;
    $("tasks-empty").hidden = data.items.length > 0;
    $("tasks").tBodies[0].replaceChildren(
      ...data.items.map((task) => {
        const outcome = document.createElement("span");
        if (task.error) {
          outcome.className = "error";
          outcome.textContent = short(task.error);
          outcome.title = task.error;
        } else if (task.status === "COMPLETED") {
          outcome.className = "result";
          outcome.textContent = short(JSON.stringify(task.result));
        }
        const tr = cells([
          taskLink(task.id),
          task.type,
          badge(task.status),
          task.queue,
          `${task.attempts}/${task.max_attempts}`,
          stamp(task.created_at),
          task.finished_at ? stamp(task.finished_at) : "",
          outcome,
        ]);
        tr.dataset.taskId = String(task.id);
        return tr;
      }),
    );
    pager();
  }

  function pager() {
    const number = list.cursor && !list.before.length ? "a later page" : `page ${list.before.length + 1}`;
    $("page-number").textContent = number;
    $("page-next").disabled = !list.next;
    $("page-prev").disabled = !list.cursor;
    $("page-first").disabled = !list.cursor;
  }

  function currentFilters() {
    return filtersOf(new URLSearchParams(location.hash.split("?")[1] || ""));
  }

  function nextPage() {
    if (!list.next) return;
    list.before.push(list.cursor);
    location.hash = listHash(currentFilters(), list.next);
  }

  function previousPage() {
    const cursor = list.before.length ? list.before[list.before.length - 1] : "";
    if (!list.before.length) list.before.push(""); // reloaded on a later page: Previous is the first
    location.hash = listHash(currentFilters(), cursor);
  }

  function firstPage() {
    list.before = [];
    location.hash = listHash(currentFilters(), "");
  }

  function apply(event) {
    event.preventDefault();
    const hash = listHash(formFilters(), "");
    if (location.hash === hash) route(); // the same filters: load them again
    else location.hash = hash;
  }

  function clearFilters() {
    fillForm({ limit: $("filter-limit").value });
    const hash = listHash({ limit: $("filter-limit").value }, "");
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // The owner filter is for callers who see every owner's tasks (tasks:admin).
  function showOwnerFilter() {
    $("filter-owner-label").hidden = !window.taskcore.admin;
  }

  // --- the task page ------------------------------------------------------------------

  function stopTask() {
    clearTimeout(page.timer);
    page.timer = null;
    page.id = null;
    page.epoch += 1;
  }

  function openTask(id) {
    stopTask();
    page.shown = null;
    page.task = null;
    $("task").hidden = true;
    $("task-action").textContent = "";
    hideProblem($("task-problem"));
    if (id === null) {
      showProblem($("task-problem"), null, "Not a task id");
      $("task-problem").append(note("Task pages are #/tasks/<id>, a positive number."));
      return;
    }
    page.id = id;
    $("task-loading").hidden = false;
    loadTask(page.epoch);
  }

  async function loadTask(epoch) {
    const id = page.id;
    try {
      const task = await window.taskcore.api("GET", `/tasks/${id}/detail`);
      let workflow = null;
      let workflowError = null;
      if (task.workflow_id !== null) {
        try {
          workflow = await window.taskcore.api("GET", `/workflows/${task.workflow_id}`);
        } catch (error) {
          workflowError = error;
        }
      }
      if (epoch !== page.epoch) return;
      hideProblem($("task-problem"));
      renderTask(task, workflow, workflowError);
    } catch (error) {
      if (epoch !== page.epoch) return;
      if (error.status === 404) {
        $("task").hidden = true; // gone (or never this caller's): nothing of it stays on the page
        showProblem($("task-problem"), error, `Task #${id} not found`);
        $("task-problem").append(note("It never existed, its retention passed, or it is not this token's to see."));
      } else {
        showProblem($("task-problem"), error); // the page keeps what it showed last
      }
    } finally {
      if (epoch === page.epoch) {
        $("task-loading").hidden = true;
        page.timer = setTimeout(() => {
          if (epoch === page.epoch) loadTask(epoch);
        }, POLL_MS);
      }
    }
  }

  function renderTask(task, workflow, workflowError) {
    page.task = task;
    const key = JSON.stringify([task, workflow, workflowError && workflowError.message]);
    buttons(task);
    if (key === page.shown) return; // unchanged: the focus and the selection stay where they are
    page.shown = key;
    $("task").hidden = false;
    $("task").dataset.status = task.status;
    $("task-id").textContent = `#${task.id}`;
    $("task-type").textContent = task.type;
    $("task-status").replaceChildren(badge(task.status));
    renderFacts(task);
    renderProgress(task);
    $("task-input").textContent = json(task.input_data);
    if (task.status === "COMPLETED") {
      $("task-outcome-title").textContent = "Result";
      $("task-outcome").textContent = json(task.result);
      $("task-outcome").className = "json";
    } else if (task.error) {
      $("task-outcome-title").textContent = task.status === "FAILED" ? "Error" : "Last error";
      $("task-outcome").textContent = task.error;
      $("task-outcome").className = "json error-text";
    } else {
      $("task-outcome-title").textContent = "Result";
      $("task-outcome").textContent = FINAL.includes(task.status) ? "none" : "not yet";
      $("task-outcome").className = "json muted";
    }
    renderTimeline(task);
    renderNeighbours(task, workflow, workflowError);
  }

  function renderFacts(task) {
    const facts = [
      ["queue", task.queue],
      ["priority", String(task.priority)],
      ["owner", task.owner === null ? "–" : task.owner],
      ["attempts", `${task.attempts} of ${task.max_attempts}`],
      ["created", stamp(task.created_at)],
      ["due", stamp(task.run_at)],
      ["started", stamp(task.started_at)],
      ["finished", stamp(task.finished_at)],
      ["updated", stamp(task.updated_at)],
    ];
    if (task.lease_until) facts.push(["lease until", stamp(task.lease_until)]);
    if (task.unique_key !== null) facts.push(["unique key", task.unique_key]);
    if (task.callback_url !== null) facts.push(["callback", task.callback_url]);
    if (task.blocked) facts.push(["blocked", "waits for the tasks it runs after"]);
    $("task-facts").replaceChildren(
      ...facts.flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = value;
        dd.dataset.fact = name;
        return [dt, dd];
      }),
    );
  }

  function renderProgress(task) {
    const shown = task.progress !== null || task.progress_message !== null;
    $("task-progress-box").hidden = !shown;
    if (!shown) return;
    const bar = $("task-progress");
    if (task.progress === null) bar.removeAttribute("value");
    else bar.value = task.progress;
    const percent = task.progress === null ? "" : `${Math.round(task.progress * 100)}%`;
    const message = task.progress_message || "";
    $("task-progress-text").textContent = [percent, message].filter(Boolean).join(" · ");
    bar.setAttribute("aria-label", `progress ${percent}`.trim());
  }

  function event(kind, at, text, detail) {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    li.className = kind;
    const time = document.createElement("time");
    if (at) time.dateTime = at;
    time.textContent = at ? stamp(at) : "";
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = text;
    li.append(time, what);
    if (detail) {
      const more = document.createElement("span");
      more.className = "detail";
      more.textContent = detail;
      li.append(more);
    }
    return li;
  }

  function renderTimeline(task) {
    const items = [event("created", task.created_at, "created")];
    const log = task.attempt_log;
    if (log.length && log[0].number > 1) items.push(event("gap", null, "earlier attempts are not kept"));
    if (!log.length && task.started_at) {
      // from before the log was kept: the row knows only the last claim
      items.push(event("claimed", task.started_at, `attempt ${task.attempts} claimed`));
    }
    log.forEach((attempt, i) => {
      // A count that starts again after an ended attempt: the task was re-queued (its time is not kept).
      if (i > 0 && attempt.number === 1 && log[i - 1].ended_at) items.push(event("requeued", null, "re-queued"));
      items.push(event("claimed", attempt.claimed_at, `attempt ${attempt.number} claimed`));
      if (attempt.ended_at) {
        const kind = `ended ${String(attempt.outcome).toLowerCase()}`;
        const text = `attempt ${attempt.number} ${OUTCOMES[attempt.outcome] || attempt.outcome}`;
        const took = span(attempt.claimed_at, attempt.ended_at);
        const detail = [took && `after ${took}`, attempt.error].filter(Boolean).join(": ");
        items.push(event(kind, attempt.ended_at, text, detail));
      }
    });
    if (FINAL.includes(task.status)) {
      items.push(event(`verdict ${task.status.toLowerCase()}`, task.finished_at, task.status));
    } else if (task.status === "PROCESSING") {
      items.push(event("now", null, "running now"));
    } else if (task.blocked) {
      items.push(event("waiting", null, "waiting for the tasks it runs after"));
    } else {
      items.push(event("waiting", task.run_at, "waiting: due"));
    }
    $("task-timeline").replaceChildren(...items);
  }

  // The steps it runs after, the steps that run after it, and the rest of its workflow.
  function renderNeighbours(task, workflow, workflowError) {
    const body = $("task-neighbours").tBodies[0];
    const name = $("task-workflow-name");
    const rows = [];
    const before = new Set(task.after);
    if (workflow) {
      name.textContent = `#${workflow.id}${workflow.name ? ` ${workflow.name}` : ""}: ${workflow.status}`;
      for (const step of workflow.steps) {
        let relation = "same workflow";
        if (step.id === task.id) relation = "this task";
        else if (before.has(step.id)) relation = "runs before it";
        else if (step.after.includes(task.id)) relation = "runs after it";
        const tr = cells([step.step || "", step.id === task.id ? `#${step.id}` : taskLink(step.id),
          step.type, badge(step.status), relation]);
        tr.dataset.taskId = String(step.id);
        tr.dataset.relation = relation;
        if (step.id === task.id) tr.className = "current";
        rows.push(tr);
      }
    } else {
      name.textContent = workflowError ? `#${task.workflow_id}: ${workflowError.message}` : "";
      for (const id of task.after) {
        const tr = cells(["", taskLink(id), "", "", "runs before it"]);
        tr.dataset.taskId = String(id);
        tr.dataset.relation = "runs before it";
        rows.push(tr);
      }
    }
    body.replaceChildren(...rows);
    $("task-neighbours").hidden = rows.length === 0;
    $("task-neighbours-none").hidden = rows.length > 0;
  }

  function buttons(task) {
    const cancel = $("task-cancel");
    const retry = $("task-retry");
    cancel.disabled = page.busy || !["PENDING", "PROCESSING"].includes(task.status);
    retry.disabled = page.busy || !["FAILED", "CANCELLED"].includes(task.status);
    cancel.title = cancel.disabled ? "Only a PENDING or PROCESSING task can be cancelled" : "POST /tasks/{id}/cancel";
    retry.title = retry.disabled ? "Only a FAILED or CANCELLED task can be re-queued" : "POST /tasks/{id}/retry";
  }

  async function act(action, verb) {
    const task = page.task;
    if (!task || page.busy) return;
    page.busy = true;
    buttons(task);
    const epoch = page.epoch;
    const said = $("task-action");
    said.className = "";
    said.textContent = `${verb}…`;
    try {
      const changed = await window.taskcore.api("POST", `/tasks/${task.id}/${action}`);
      if (epoch !== page.epoch) return;
      said.className = "ok";
      said.textContent = `${verb}: now ${changed.status}`;
    } catch (error) {
      if (epoch !== page.epoch) return;
      said.className = "error";
      const problem = error.problem;
      said.textContent = `${verb} refused: ${problem && problem.detail ? problem.detail : error.message}`;
    } finally {
      page.busy = false;
    }
    if (epoch !== page.epoch) return;
    clearTimeout(page.timer);
    page.epoch += 1; // the poll under way (if any) is superseded by this read
    await loadTask(page.epoch);
  }

  // --- wiring ----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("filters").addEventListener("submit", apply);
    $("filter-clear").addEventListener("click", clearFilters);
    $("tasks-refresh").addEventListener("click", () => route());
    $("page-next").addEventListener("click", nextPage);
    $("page-prev").addEventListener("click", previousPage);
    $("page-first").addEventListener("click", firstPage);
    $("task-cancel").addEventListener("click", () => act("cancel", "Cancel"));
    $("task-retry").addEventListener("click", () => act("retry", "Re-queue"));
    document.addEventListener("taskcore:scope", showOwnerFilter);
    // Another token sees other tasks: whatever view is open is read again with it.
    document.addEventListener("taskcore:token", () => {
      showOwnerFilter();
      route();
    });
    window.addEventListener("hashchange", route);
    route();
  });
})();
