-- Every statement the adapter runs, one named block each ("-- name: <key>"),
-- loaded once by sql.py. Statements that return tasks return whole rows: the
-- row factory (rows.py) keeps the columns ``Task`` has and drops the others
-- (the outbox's dispatched_at), so a new column needs no change here.

-- name: add_task
-- A new task starts as Task.created makes it: PENDING, no attempt, version 1.
INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at, run_at, owner,
                   priority, queue, concurrency_key, rate_key, after, run_anyway, blocked, workflow_id, step,
                   callback_url, trace_context, tags, metadata)
VALUES (%(type)s, %(input)s, 'PENDING', 0, %(max_attempts)s, 1, %(created_at)s, %(created_at)s, %(run_at)s,
        %(owner)s, %(priority)s, %(queue)s, %(concurrency_key)s, %(rate_key)s, %(after)s::bigint[],
        %(run_anyway)s, cardinality(%(after)s::bigint[]) > 0, %(workflow_id)s, %(step)s, %(callback_url)s,
        %(trace_context)s, %(tags_text)s::text[], %(metadata)s)
RETURNING *;

-- name: add_tasks
-- Several add_task in one statement (concurrent submits, coalesced). The ids
-- are drawn in a CTE that is materialised once (it is read twice and calls
-- nextval), so joining the inserted rows back to it on id gives each row its
-- position in the batch: the answer is in the callers' order. The rows come
-- as one JSON array (%(rows)s, see save_tasks); a JSON null input is SQL NULL
-- there, hence the coalesce.
WITH new AS (
    SELECT nextval(pg_get_serial_sequence('tasks', 'id')) AS id, given.*
    FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS given(type text, input jsonb, max_attempts integer, created_at timestamptz, run_at timestamptz,
                  owner text, priority smallint, queue text, concurrency_key text, rate_key text,
                  callback_url text, trace_context text, tags text[], metadata jsonb, position integer)
), added AS (
    INSERT INTO tasks (id, type, input, status, attempts, max_attempts, version, created_at, updated_at,
                       run_at, owner, priority, queue, concurrency_key, rate_key, callback_url, trace_context,
                       tags, metadata)
    OVERRIDING SYSTEM VALUE
    SELECT id, type, coalesce(input, 'null'), 'PENDING', 0, max_attempts, 1, created_at, created_at, run_at,
           owner, priority, queue, concurrency_key, rate_key, callback_url, trace_context, tags,
           coalesce(metadata, '{}')
    FROM new
    RETURNING *
)
SELECT added.*
FROM added JOIN new USING (id)
ORDER BY new.position;

-- name: add_unique_tasks
-- add_tasks for tasks with unique keys (model/uniqueness.py). A task whose
-- key an unfinished task of its type and owner holds is not stored (the
-- partial unique index tasks_unique_key_idx, named by its expressions and
-- predicate) and its row comes back as NULLs, still in the callers' order:
-- the caller then reads the holders (unique_key_holders). A key being
-- inserted by a transaction still open makes this wait for its outcome, so
-- rows go in in the order of their keys: two batches of the same keys then
-- wait for each other one way only, never in a cycle (a deadlock, which
-- PostgreSQL breaks after a second by failing one of them). Of two tasks of
-- one key in the batch, the first in the callers' order is stored.
WITH new AS (
    SELECT nextval(pg_get_serial_sequence('tasks', 'id')) AS id, given.*
    FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS given(type text, input jsonb, max_attempts integer, created_at timestamptz, run_at timestamptz,
                  owner text, priority smallint, queue text, concurrency_key text, rate_key text,
                  callback_url text, trace_context text, tags text[], metadata jsonb, unique_key text,
                  after bigint[], run_anyway boolean, workflow_id bigint, step text, position integer)
), added AS (
    INSERT INTO tasks (id, type, input, status, attempts, max_attempts, version, created_at, updated_at,
                       run_at, owner, priority, queue, concurrency_key, rate_key, unique_key, after, run_anyway,
                       blocked, workflow_id, step, callback_url, trace_context, tags, metadata)
    OVERRIDING SYSTEM VALUE
    SELECT id, type, coalesce(input, 'null'), 'PENDING', 0, max_attempts, 1, created_at, created_at, run_at,
           owner, priority, queue, concurrency_key, rate_key, unique_key, coalesce(after, '{}'), run_anyway,
           cardinality(after) > 0, workflow_id, step, callback_url, trace_context, tags,
           coalesce(metadata, '{}')
    FROM new
    ORDER BY type, coalesce(owner, ''), unique_key, position
    ON CONFLICT (type, coalesce(owner, ''), unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('PENDING', 'PROCESSING')
        DO NOTHING
    RETURNING *
)
SELECT added.*
FROM new LEFT JOIN added ON added.id = new.id
ORDER BY new.position;

-- name: unique_key_holders
-- The unfinished tasks holding these (type, owner or '', unique key) slots:
-- the index's expressions and predicate, so the index answers.
SELECT tasks.*
FROM tasks
JOIN unnest(%(types)s::text[], %(owners)s::text[], %(unique_keys)s::text[]) AS slot(type, owner, unique_key)
  ON tasks.type = slot.type AND coalesce(tasks.owner, '') = slot.owner AND tasks.unique_key = slot.unique_key
WHERE tasks.unique_key IS NOT NULL AND tasks.status IN ('PENDING', 'PROCESSING');

-- name: get_task
SELECT *
FROM tasks
WHERE id = %(id)s;

-- name: claim_tasks
-- Task.claim for one or more tasks (concurrent deliveries, coalesced) as one
-- guarded UPDATE, with one clock reading and lease end for the batch: of
-- concurrent claimers the row lock lets one through, and the others re-check
-- the WHERE against its new version. The ids in %(alone)s are claimed by a
-- worker that runs them alone; a suspect task is claimed by no other. A task
-- of a paused queue is not claimed, nor here one with limits: those are
-- claimed one at a time (limited_candidates, then the limited_* statements).
UPDATE tasks
SET status = 'PROCESSING',
    attempts = attempts + 1,
    lease_until = %(lease_until)s,
    started_at = %(now)s,
    updated_at = %(now)s,
    version = version + 1,
    alone = id = ANY(%(alone)s::bigint[]),
    progress = NULL,
    progress_message = NULL,
    progress_at = NULL,
    -- model/attempts.py started(): a new entry at the end, the oldest dropped past 20
    attempt_log = CASE WHEN jsonb_array_length(attempt_log) >= 20 THEN attempt_log - 0 ELSE attempt_log END
                  || jsonb_build_array(jsonb_build_object('number', attempts + 1, 'claimed_at', %(now)s::timestamptz))
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'PENDING' AND run_at <= %(now)s AND NOT blocked
  AND (NOT suspect OR id = ANY(%(alone)s::bigint[]))
  AND NOT EXISTS (SELECT 1 FROM queues WHERE queues.name = tasks.queue AND queues.paused)
  AND concurrency_key IS NULL AND rate_key IS NULL
RETURNING *;

-- name: limited_candidates
-- Of the ids a batch claim did not get, the claimable ones that have limits.
SELECT id FROM tasks
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'PENDING' AND run_at <= %(now)s AND NOT blocked
  AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL);

-- name: limited_lock
-- A limited claim's first step: the task, locked, with what the claim needs
-- beyond it (the start reserved for it, whether its queue is paused).
SELECT t.*, EXISTS (SELECT 1 FROM queues q WHERE q.name = t.queue AND q.paused) AS queue_paused
FROM tasks t
WHERE t.id = %(id)s
FOR UPDATE OF t;

-- name: limited_scope_lock
-- Serialises the claims (and wakes) of one concurrency key, and nothing else.
SELECT pg_advisory_xact_lock(hashtextextended(%(scope)s, 0));

-- name: limited_running
SELECT count(*) FROM tasks
WHERE type = %(type)s AND concurrency_key = %(key)s AND status = 'PROCESSING';

-- name: limited_park
-- Over its concurrency limit: parked until a task of its key ends; a start
-- reserved by its rate limit lapses (it reserves again when woken).
UPDATE tasks SET throttled = true, rate_slot = NULL WHERE id = %(id)s;

-- name: limited_reserve
-- The next start of a rate scope (now, or when it is free), and the one after
-- it reserved for the scope's next claim: starts one interval apart.
INSERT INTO rate_limits (scope, next_at)
VALUES (%(scope)s, %(now)s::timestamptz + %(interval)s::interval)
ON CONFLICT (scope) DO UPDATE
    SET next_at = greatest(rate_limits.next_at, %(now)s::timestamptz) + %(interval)s::interval
RETURNING next_at - %(interval)s::interval AS slot;

-- name: limited_defer
-- Task.defer with the start reserved for it; its wake-up is due again.
UPDATE tasks
SET run_at = %(run_at)s, updated_at = %(updated_at)s, version = %(version)s, rate_slot = %(run_at)s,
    dispatched_at = NULL
WHERE id = %(id)s AND version = %(version)s - 1
RETURNING *;

-- name: limited_claim
-- Task.claim of a limited task, under the row lock its claim holds.
UPDATE tasks
SET status = 'PROCESSING', attempts = %(attempts)s, lease_until = %(lease_until)s, started_at = %(started_at)s,
    updated_at = %(updated_at)s, version = %(version)s, alone = %(alone)s, throttled = false, rate_slot = NULL,
    progress = NULL, progress_message = NULL, progress_at = NULL, attempt_log = %(attempt_log)s
WHERE id = %(id)s AND version = %(version)s - 1
RETURNING *;

-- name: wake_parked
-- The next task parked by a concurrency key's limit, no longer parked and with
-- its wake-up due (the caller publishes it; if that fails, the sweeper does).
UPDATE tasks
SET throttled = false, dispatched_at = NULL
WHERE id = (SELECT id FROM tasks
            WHERE type = %(type)s AND concurrency_key = %(key)s AND status = 'PENDING' AND throttled
            ORDER BY priority DESC, id
            LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: save_task
-- Compare-and-set on the version the transition was computed from.
UPDATE tasks
SET status = %(status)s::task_status,
    result = %(result)s,
    error = %(error)s,
    attempts = %(attempts)s,
    run_at = %(run_at)s,
    lease_until = %(lease_until)s,
    started_at = %(started_at)s,
    finished_at = %(finished_at)s,
    updated_at = %(updated_at)s,
    version = %(version)s,
    alone = %(alone)s,
    suspect = %(suspect)s,
    blocked = %(blocked)s,
    progress = %(progress)s,
    progress_message = %(progress_message)s,
    progress_at = %(progress_at)s,
    attempt_log = %(attempt_log)s,
    -- back to PENDING means a new message is needed; the caller marks it once confirmed
    dispatched_at = CASE WHEN %(status)s::task_status = 'PENDING' THEN NULL ELSE dispatched_at END
WHERE id = %(id)s AND version = %(version)s - 1;

-- name: save_tasks
-- Several save_task in one statement (concurrent verdicts, coalesced): each
-- row lands only if it still has its transition's previous version. The ids
-- are distinct (the caller splits repeats into later statements); the saved
-- ones are returned. The rows come as one JSON array (%(rows)s), encoded in
-- one call: an array parameter per column costs the driver a Python loop per
-- element, about a tenth of a worker's CPU.
UPDATE tasks AS t
SET status = v.status,
    result = v.result,
    error = v.error,
    attempts = v.attempts,
    run_at = v.run_at,
    lease_until = v.lease_until,
    started_at = v.started_at,
    finished_at = v.finished_at,
    updated_at = v.updated_at,
    version = v.version,
    alone = v.alone,
    suspect = v.suspect,
    blocked = v.blocked,
    progress = v.progress,
    progress_message = v.progress_message,
    progress_at = v.progress_at,
    attempt_log = v.attempt_log,
    dispatched_at = CASE WHEN v.status = 'PENDING' THEN NULL ELSE t.dispatched_at END
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS v(id bigint, status task_status, result jsonb, error text, attempts integer, run_at timestamptz,
          lease_until timestamptz, started_at timestamptz, finished_at timestamptz, updated_at timestamptz,
          version integer, alone boolean, suspect boolean, blocked boolean, progress double precision,
          progress_message text, progress_at timestamptz, attempt_log jsonb)
WHERE t.id = v.id AND t.version = v.version - 1
RETURNING t.id;

-- name: renew_lease
-- The heartbeat of a running attempt. Fenced by version, so it fails once the
-- task was cancelled or released, which tells the worker to stop.
UPDATE tasks
SET lease_until = %(lease_until)s
WHERE id = %(id)s AND version = %(version)s AND status = 'PROCESSING';

-- name: mark_dispatched
-- Publisher confirms, recorded in batches, each task with its message's
-- confirmation time (shared by the tasks one message wakes). Only PENDING rows care.
UPDATE tasks
SET dispatched_at = confirmed.at
FROM unnest(%(ids)s::bigint[], %(ats)s::timestamptz[]) AS confirmed(id, at)
WHERE tasks.id = confirmed.id AND tasks.status = 'PENDING';

-- name: lapsed_tasks
-- PROCESSING rows whose worker stopped renewing the lease (crashed, partitioned).
SELECT *
FROM tasks
WHERE status = 'PROCESSING' AND lease_until < %(now)s
ORDER BY lease_until
LIMIT %(limit)s;

-- name: undispatched_tasks
-- PENDING rows with no confirmed message for a while (publish failed, or the
-- API died between commit and publish), and due rows whose message is long
-- overdue (lost with a broker that lost its queue). Duplicates are harmless:
-- the claim lets one through.
SELECT *
FROM tasks
WHERE status = 'PENDING' AND NOT blocked
  AND ((dispatched_at IS NULL AND updated_at < %(unconfirmed_before)s)
       OR (run_at < %(overdue_before)s AND dispatched_at < %(overdue_before)s))
ORDER BY updated_at
LIMIT %(limit)s;

-- name: list_tasks
-- Keyset pagination, newest first (listings, and bulk actions' batches).
-- Each filter is optional (NULL, or no tags: any); the row comparison on
-- (created_at, id) resumes strictly after the last page. A task has all the
-- tags asked for (the GIN index tasks_tags_idx finds them when they are few).
SELECT *
FROM tasks
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s::text)
  AND (%(status)s::task_status IS NULL OR status = %(status)s::task_status)
  AND (%(statuses)s::task_status[] IS NULL OR status = ANY(%(statuses)s::task_status[]))
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (cardinality(%(tags)s::text[]) = 0 OR (tags @> %(tags)s::text[] AND tags <> '{}'))
  AND (%(created_after)s::timestamptz IS NULL OR created_at > %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
  AND (%(before_created)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::bigint))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: ping
SELECT 1;

-- name: lock_migrations
-- Session-level, held until the migrating connection closes: processes
-- started together apply the migrations one after the other.
SELECT pg_advisory_lock(%(key)s);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version) VALUES (%(version)s);

-- name: claim_idempotency_key
-- Take the key, or take over an expired one. Returns nothing when a live key
-- exists; a concurrent transaction holding the same key makes this wait for
-- its outcome first.
INSERT INTO idempotency_keys (owner, key, request_hash, created_at)
VALUES (%(owner)s, %(key)s, %(request_hash)s, %(now)s)
ON CONFLICT (owner, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, task_id = NULL, created_at = EXCLUDED.created_at
    WHERE idempotency_keys.created_at < %(expired_before)s
RETURNING owner;

-- name: link_idempotency_key
-- deduplicated: the key's first use took an unfinished task that had the
-- unique key, so a replay answers as that use did.
UPDATE idempotency_keys SET task_id = %(task_id)s, deduplicated = %(deduplicated)s
WHERE owner = %(owner)s AND key = %(key)s;

-- name: forget_idempotency_keys
-- Expired keys, a batch at a time, oldest first. SKIP LOCKED leaves alone a
-- key that a submit is taking over right now (and other sweepers' batches);
-- the outer condition is checked again on a row updated meanwhile, so a key
-- just taken over is kept.
DELETE FROM idempotency_keys
WHERE (owner, key) IN (
        SELECT owner, key FROM idempotency_keys
        WHERE created_at < %(used_before)s
        ORDER BY created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
  AND created_at < %(used_before)s;

-- name: prune_tasks
-- Retention: a batch of finished tasks past their type's cutoff. Per type,
-- through tasks_type_finished_at_idx, so the tasks a type keeps (forever, or
-- longer than others) are never walked: the cost of a batch is the types
-- present plus the tasks it deletes, however many are kept. %(types)s are
-- the types with a cutoff of their own, found in %(befores)s at the same
-- position; the types in %(kept)s are kept forever; every other type, one no
-- handler knows included, goes by %(default_before)s (NULL: kept).
-- present: the types among finished tasks, one index descent each (a loose
-- index scan). due: those with a task past their cutoff, the type whose
-- oldest such task is oldest first, so a batch takes roughly the oldest
-- overall; the LATERAL runs lazily, type after type, until the batch is full.
-- The row comparisons are what only the (type, finished_at) index can serve:
-- with the type fixed, the planner would otherwise take tasks_finished_at_idx
-- for the order and filter on the type, walking past every kept task.
-- A task an idempotency key still names stays until the sweeper forgets the
-- key (idempotency_keys_task_id_idx), so a retried submit gets its task back.
-- SKIP LOCKED passes by a row a transition holds (a retry making a FAILED
-- task PENDING) and other sweepers' batches; a row changed meanwhile is
-- checked again against the LATERAL's conditions, and the outer one repeats
-- the only one a transition can undo. A task that a blocked step runs after
-- is kept until that step starts (tasks_blocked_after_idx): the step is
-- settled by reading it, and its handler reads its result.
WITH RECURSIVE present(type) AS (
    (SELECT type FROM tasks WHERE finished_at IS NOT NULL ORDER BY type LIMIT 1)
    UNION ALL
    SELECT (SELECT tasks.type FROM tasks
            WHERE tasks.finished_at IS NOT NULL AND tasks.type > present.type
            ORDER BY tasks.type LIMIT 1)
    FROM present
    WHERE present.type IS NOT NULL
), cutoffs AS (
    SELECT type,
           coalesce((%(befores)s::timestamptz[])[array_position(%(types)s::text[], type)],
                    %(default_before)s::timestamptz) AS before
    FROM present
    WHERE type IS NOT NULL AND type <> ALL(%(kept)s::text[])
), due AS (
    SELECT type, before,
           (SELECT finished_at FROM tasks
            WHERE tasks.type = cutoffs.type AND (tasks.type, tasks.finished_at) < (cutoffs.type, cutoffs.before)
              AND tasks.finished_at IS NOT NULL
            ORDER BY tasks.type, tasks.finished_at LIMIT 1) AS oldest
    FROM cutoffs
    WHERE before IS NOT NULL
)
DELETE FROM tasks
WHERE id IN (
        SELECT expired.id
        FROM (SELECT type, before FROM due WHERE oldest IS NOT NULL ORDER BY oldest) AS due
        CROSS JOIN LATERAL (
            SELECT id FROM tasks
            WHERE tasks.type = due.type AND (tasks.type, tasks.finished_at) < (due.type, due.before)
              AND tasks.finished_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE idempotency_keys.task_id = tasks.id)
              AND NOT EXISTS (SELECT 1 FROM tasks AS waiting
                              WHERE waiting.after @> ARRAY[tasks.id] AND waiting.status = 'PENDING'
                                AND waiting.blocked)
            ORDER BY tasks.type, tasks.finished_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED) AS expired
        LIMIT %(limit)s)
  AND finished_at IS NOT NULL;

-- name: get_idempotency_key
SELECT request_hash, task_id, deduplicated FROM idempotency_keys WHERE owner = %(owner)s AND key = %(key)s;

-- name: status_counts
-- The dashboard's counts over every task. An index-only scan at best: this
-- reads every row, so it is for a dashboard's poll, not a hot path.
SELECT status, count(*) AS tasks
FROM tasks
GROUP BY status;

-- name: status_counts_of_owner
-- Kept apart from status_counts so that the plan can use the owner's index.
SELECT status, count(*) AS tasks
FROM tasks
WHERE owner = %(owner)s
GROUP BY status;

-- name: minute_stats
-- Finishes per minute since %(since)s (tasks_finished_at_idx), with the
-- percentiles of the last attempt's queue wait (from due to claimed) and run
-- time. date_bin keeps the minutes in UTC whatever the session's time zone.
SELECT date_bin('1 minute', finished_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS minute,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - run_at)::float8) AS wait_p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - run_at)::float8) AS wait_p95_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8) AS run_p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8) AS run_p95_s
FROM tasks
WHERE finished_at >= date_bin('1 minute', %(since)s::timestamptz, TIMESTAMPTZ '2000-01-01 00:00:00+00')
  AND status IN ('COMPLETED', 'FAILED')
  AND (%(owner)s::text IS NULL OR owner = %(owner)s::text)
GROUP BY minute
ORDER BY minute;

-- name: report_worker
-- One row per worker, replaced by each report; the same statement forgets
-- workers gone for a day, so the table stays as small as the fleet.
WITH forgotten AS (
    DELETE FROM workers WHERE seen_at < %(seen_at)s::timestamptz - interval '1 day' AND id <> %(id)s
)
INSERT INTO workers (id, started_at, seen_at, in_flight, processed, held)
VALUES (%(id)s, %(started_at)s, %(seen_at)s, %(in_flight)s, %(processed)s, %(held)s)
ON CONFLICT (id) DO UPDATE
    SET started_at = EXCLUDED.started_at,
        seen_at = EXCLUDED.seen_at,
        in_flight = EXCLUDED.in_flight,
        processed = EXCLUDED.processed,
        held = EXCLUDED.held;

-- name: workers_seen
SELECT id, started_at, seen_at, in_flight, processed, held
FROM workers
WHERE seen_at >= %(since)s
ORDER BY seen_at DESC, id;

-- name: census_lock
-- One wake-up census at a time, whatever the number of sweepers: the others
-- skip it (held until the census's transaction ends).
SELECT pg_try_advisory_xact_lock(%(key)s) AS locked;

-- name: census_counts
-- The messages of the due PENDING tasks of the named %(queues)s whose message was confirmed
-- before the broker's queues were read (%(read_at)s; a delayed one also past its due time by a tenth of its
-- delay, the lateness the delay buckets allow), and the messages the workers
-- seen since %(held_since)s hold unsettled. A task confirmed later may have
-- its message missing from that reading: it is not counted either. The tasks
-- one message wakes share its confirmation time: a message is a distinct time.
SELECT (SELECT count(DISTINCT dispatched_at) FROM tasks
        WHERE status = 'PENDING' AND dispatched_at < %(read_at)s AND queue = ANY(%(queues)s::text[])
          AND NOT throttled AND NOT blocked
          AND run_at + greatest(run_at - dispatched_at, interval '0') / 10 < %(read_at)s) AS due,
       (SELECT coalesce(sum(held), 0) FROM workers WHERE seen_at >= %(held_since)s) AS held;

-- name: census_restart
-- A lasting deficit with nothing left to pick (the tasks it counts were
-- confirmed after it began, or woken during it and lost again): count it as
-- beginning now, so they can be picked once it has lasted again.
UPDATE wake_up_census SET deficit_since = %(now)s;

-- name: census_deficit
-- Since when there is a deficit (kept from the first census that saw it), or NULL.
UPDATE wake_up_census
SET deficit_since = CASE WHEN %(deficit)s THEN coalesce(deficit_since, %(now)s::timestamptz) END
RETURNING deficit_since;

-- name: take_missing_wake_ups
-- The tasks to wake again: those of the %(messages)s messages missing,
-- highest priority and oldest confirmation first, among those confirmed
-- before the deficit began (a task woken during it is not picked again ahead
-- of one still missing) and before %(settled_before)s; at most %(limit)s
-- tasks, stamped as confirmed now, a microsecond apart: each is published
-- again as a message of its own until its confirmation says otherwise.
WITH candidates AS MATERIALIZED (
    SELECT id, priority, dispatched_at FROM tasks
    WHERE status = 'PENDING' AND queue = ANY(%(queues)s::text[]) AND NOT throttled AND NOT blocked
      AND dispatched_at < least(%(settled_before)s::timestamptz, %(deficit_since)s::timestamptz)
      AND run_at + greatest(run_at - dispatched_at, interval '0') / 10 < %(settled_before)s
), missing AS (
    SELECT dispatched_at FROM candidates
    GROUP BY dispatched_at
    ORDER BY max(priority) DESC, dispatched_at
    LIMIT %(messages)s
), locked AS (
    SELECT tasks.id, candidates.priority, candidates.dispatched_at
    FROM tasks
    JOIN candidates USING (id)
    WHERE candidates.dispatched_at IN (SELECT dispatched_at FROM missing)
      AND tasks.status = 'PENDING' AND tasks.dispatched_at = candidates.dispatched_at
    ORDER BY candidates.priority DESC, candidates.dispatched_at, tasks.id
    LIMIT %(limit)s
    FOR UPDATE OF tasks SKIP LOCKED
), picked AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, dispatched_at, id) AS n FROM locked
)
UPDATE tasks
SET dispatched_at = %(now)s::timestamptz + picked.n * interval '1 microsecond'
FROM picked
WHERE tasks.id = picked.id
RETURNING tasks.*;

-- name: pause_queue
-- A row if this paused the queue, none if it was paused already.
INSERT INTO queues (name, paused, updated_at)
VALUES (%(name)s, true, %(at)s)
ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = EXCLUDED.updated_at
    WHERE NOT queues.paused
RETURNING name;

-- name: resume_queue
UPDATE queues SET paused = false, updated_at = %(at)s
WHERE name = %(name)s AND paused
RETURNING name;

-- name: paused_queues
SELECT name FROM queues WHERE paused;

-- name: queue_loads
-- GET /queues: each queue's unfinished tasks (the status index's leading column).
SELECT queue,
       count(*) FILTER (WHERE status = 'PROCESSING') AS running,
       count(*) FILTER (WHERE status = 'PENDING' AND run_at <= %(now)s) AS waiting,
       count(*) FILTER (WHERE status = 'PENDING' AND run_at > %(now)s) AS scheduled
FROM tasks
WHERE status IN ('PENDING', 'PROCESSING')
GROUP BY queue;

-- name: lock_parents
-- The tasks a new one runs after, kept from being deleted until it is stored
-- (a key-share lock: their own transitions do not wait for it); only those its
-- owner can see (a NULL owner sees every task).
SELECT id FROM tasks
WHERE id = ANY(%(ids)s::bigint[]) AND (%(owner)s::text IS NULL OR owner = %(owner)s::text)
FOR KEY SHARE;

-- name: add_workflow
INSERT INTO workflows (name, owner, created_at)
VALUES (%(name)s, %(owner)s, %(created_at)s)
RETURNING id, name, owner, created_at;

-- name: get_workflow
SELECT id, name, owner, created_at FROM workflows WHERE id = %(id)s;

-- name: workflow_steps
SELECT * FROM tasks WHERE workflow_id = %(id)s ORDER BY id;

-- name: get_tasks
SELECT * FROM tasks WHERE id = ANY(%(ids)s::bigint[]);

-- name: blocked_after
-- The blocked tasks that run after any of %(ids)s (the GIN index of blocked tasks).
SELECT * FROM tasks
WHERE status = 'PENDING' AND blocked AND after && %(ids)s::bigint[];

-- name: stalled_tasks
-- Blocked tasks whose parents have all ended, or one of which FAILED or was
-- CANCELLED, oldest first: ends whose settling was missed.
SELECT * FROM tasks t
WHERE t.status = 'PENDING' AND t.blocked
  AND (NOT EXISTS (SELECT 1 FROM tasks p
                   WHERE p.id = ANY(t.after) AND p.status IN ('PENDING', 'PROCESSING'))
       OR EXISTS (SELECT 1 FROM tasks p
                  WHERE p.id = ANY(t.after) AND p.status IN ('FAILED', 'CANCELLED')))
ORDER BY t.updated_at
LIMIT %(limit)s;

-- name: notify_committed
-- Sent by PostgreSQL when (and only if) the caller's transaction commits.
SELECT pg_notify(%(channel)s, %(id)s);

-- name: listen_committed
LISTEN taskcore_committed;

-- name: take_listener_lock
-- One listener for committed tasks among the workers: the one whose session
-- holds this; the others wait here to take over.
SELECT pg_advisory_lock(%(key)s);

-- name: add_webhook_endpoint
INSERT INTO webhook_endpoints (owner, url, events, secret, description, created_at)
VALUES (%(owner)s, %(url)s, %(events)s::text[], %(secret)s, %(description)s, %(created_at)s)
RETURNING *;

-- name: webhook_endpoints
-- An owner's endpoints; every one for a NULL owner.
SELECT * FROM webhook_endpoints
WHERE %(owner)s::text IS NULL OR owner = %(owner)s::text
ORDER BY id;

-- name: remove_webhook_endpoint
-- Its deliveries still to send end FAILED with it: nobody holds its secret any more.
WITH removed AS (
    DELETE FROM webhook_endpoints
    WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s::text)
    RETURNING id
), dropped AS (
    UPDATE webhook_deliveries
    SET status = 'FAILED', next_attempt_at = NULL, last_error = 'its endpoint was removed'
    WHERE endpoint_id IN (SELECT id FROM removed) AND status = 'PENDING'
)
SELECT count(*) FROM removed;

-- name: claim_webhook_deliveries
-- The due deliveries, oldest due first, each counted as an attempt and held
-- until the lease ends (other claimers skip the rows this one locked), with
-- the secret of its endpoint as it is now (NULL: a callback, or the endpoint
-- is gone).
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE status = 'PENDING' AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = %(lease_until)s
FROM due
WHERE d.id = due.id
RETURNING d.*, (SELECT e.secret FROM webhook_endpoints e WHERE e.id = d.endpoint_id) AS secret;

-- name: webhook_delivered
UPDATE webhook_deliveries
SET status = 'DELIVERED', delivered_at = %(at)s, next_attempt_at = NULL, last_status = %(status_code)s,
    last_error = NULL
WHERE id = %(id)s AND status = 'PENDING';

-- name: webhook_attempt_failed
-- PENDING again at retry_at, or FAILED for good when there is none.
UPDATE webhook_deliveries
SET status = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN 'FAILED' ELSE 'PENDING' END::webhook_delivery_status,
    next_attempt_at = %(retry_at)s::timestamptz, last_status = %(status_code)s, last_error = %(error)s
WHERE id = %(id)s AND status = 'PENDING';

-- name: webhook_deliveries
-- A page of deliveries, newest first (keyset: ids below the previous page's last).
SELECT * FROM webhook_deliveries
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s::text)
  AND (%(status)s::webhook_delivery_status IS NULL OR status = %(status)s::webhook_delivery_status)
  AND (%(task_id)s::bigint IS NULL OR task_id = %(task_id)s::bigint)
  AND (%(endpoint_id)s::bigint IS NULL OR endpoint_id = %(endpoint_id)s::bigint)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: redeliver_webhook
-- A FAILED delivery due again now, its attempts and retry window starting over.
UPDATE webhook_deliveries
SET status = 'PENDING', attempts = 0, retry_from = %(now)s, next_attempt_at = %(now)s, last_status = NULL,
    last_error = NULL
WHERE id = %(id)s AND status = 'FAILED' AND (%(owner)s::text IS NULL OR owner = %(owner)s::text)
RETURNING *;

-- name: add_schedule
-- Nothing when the name is taken.
INSERT INTO schedules (name, type, input, cron, timezone, every_s, queue, priority, catch_up, catch_up_limit,
                       owner, system, paused, retired_at, next_fire_at, last_fire_at, error, created_at,
                       updated_at)
VALUES (%(name)s, %(type)s, %(input)s, %(cron)s, %(timezone)s, %(every_s)s, %(queue)s, %(priority)s,
        %(catch_up)s, %(catch_up_limit)s, %(owner)s, %(system)s, %(paused)s, %(retired_at)s, %(next_fire_at)s,
        %(last_fire_at)s, %(error)s, %(created_at)s, %(updated_at)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: declare_schedule
-- A system schedule the code declares: stored, or updated keeping its next
-- fire time unless its timing changed or it was retired, and keeping paused.
-- A runtime schedule of the name is left as it is (the WHERE).
INSERT INTO schedules AS s (name, type, input, cron, timezone, every_s, queue, priority, catch_up,
                            catch_up_limit, owner, system, next_fire_at, created_at, updated_at)
VALUES (%(name)s, %(type)s, %(input)s, %(cron)s, %(timezone)s, %(every_s)s, %(queue)s, %(priority)s,
        %(catch_up)s, %(catch_up_limit)s, NULL, true, %(next_fire_at)s, %(created_at)s, %(updated_at)s)
ON CONFLICT (name) DO UPDATE
SET type = EXCLUDED.type, input = EXCLUDED.input, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    every_s = EXCLUDED.every_s, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
    catch_up = EXCLUDED.catch_up, catch_up_limit = EXCLUDED.catch_up_limit,
    next_fire_at = CASE
        WHEN s.retired_at IS NOT NULL
          OR (s.cron, s.every_s, s.timezone) IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_s, EXCLUDED.timezone)
        THEN EXCLUDED.next_fire_at
        ELSE s.next_fire_at
    END,
    retired_at = NULL, updated_at = EXCLUDED.updated_at
WHERE s.system;

-- name: retire_schedules
-- The system schedules the code no longer declares.
UPDATE schedules SET retired_at = %(now)s, updated_at = %(now)s
WHERE system AND retired_at IS NULL AND NOT (name = ANY (%(names)s::text[]));

-- name: get_schedule
SELECT * FROM schedules WHERE name = %(name)s;

-- name: list_schedules
-- An owner's schedules and the system ones; every one for a NULL owner.
SELECT * FROM schedules
WHERE %(owner)s::text IS NULL OR system OR owner = %(owner)s::text
ORDER BY name;

-- name: remove_schedule
-- Its firings go with it (ON DELETE CASCADE).
DELETE FROM schedules WHERE name = %(name)s;

-- name: pause_schedule
UPDATE schedules SET paused = true, updated_at = %(now)s WHERE name = %(name)s RETURNING *;

-- name: resume_schedule
-- A paused schedule fires next at the next fire time after now (SET reads the old row).
UPDATE schedules
SET paused = false,
    next_fire_at = CASE WHEN paused THEN %(next_fire_at)s ELSE next_fire_at END,
    updated_at = CASE WHEN paused THEN %(now)s ELSE updated_at END
WHERE name = %(name)s
RETURNING *;

-- name: due_schedules
-- Of the task types the scheduler can make (all for NULL).
SELECT * FROM schedules
WHERE NOT paused AND retired_at IS NULL AND next_fire_at <= %(now)s
  AND (%(types)s::text[] IS NULL OR type = ANY (%(types)s::text[]))
ORDER BY next_fire_at, name
LIMIT %(limit)s;

-- name: next_due_schedule
SELECT min(next_fire_at) FROM schedules
WHERE NOT paused AND retired_at IS NULL AND (%(types)s::text[] IS NULL OR type = ANY (%(types)s::text[]));

-- name: lock_due_schedule
-- The schedule as the scheduler read it, still active and due then: locked
-- for this firing, or nothing if another scheduler holds it or fired it.
SELECT name FROM schedules
WHERE name = %(name)s AND next_fire_at = %(expected)s AND NOT paused AND retired_at IS NULL
FOR UPDATE SKIP LOCKED;

-- name: add_firing
-- Nothing when this fire time was fired before.
INSERT INTO schedule_firings (schedule, fire_at) VALUES (%(name)s, %(fire_at)s)
ON CONFLICT DO NOTHING
RETURNING fire_at;

-- name: firing_task
UPDATE schedule_firings SET task_id = %(task_id)s WHERE schedule = %(name)s AND fire_at = %(fire_at)s;

-- name: schedule_fired
UPDATE schedules
SET next_fire_at = %(next_fire_at)s, last_fire_at = coalesce(%(last_fire_at)s, last_fire_at), error = %(error)s,
    updated_at = %(now)s
WHERE name = %(name)s;

-- name: forget_firings
-- Firings long past: a fire time only goes forward, so they cannot be fired again.
DELETE FROM schedule_firings WHERE schedule = %(name)s AND fire_at < %(before)s;
