-- The current schema in full. Every change goes into a new numbered file in
-- migrations/ as well; a test checks that both give the same database.

CREATE TYPE task_status AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED');

-- Workflows (taskcore.model.workflows): graphs of tasks that run after each other.
CREATE TABLE workflows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    owner text,
    created_at timestamptz NOT NULL
);

CREATE TABLE tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL CONSTRAINT tasks_type_not_empty CHECK (type <> ''),
    input jsonb NOT NULL,
    status task_status NOT NULL,
    result jsonb,
    error text,
    attempts integer NOT NULL CONSTRAINT tasks_attempts_not_negative CHECK (attempts >= 0),
    max_attempts integer NOT NULL CONSTRAINT tasks_max_attempts_positive CHECK (max_attempts >= 1),
    version integer NOT NULL CONSTRAINT tasks_version_positive CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    run_at timestamptz NOT NULL,
    lease_until timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    -- The outbox: when the broker confirmed this task's message (NULL: not known
    -- to be published; the sweeper publishes it again).
    dispatched_at timestamptz,
    -- Who submitted the task (the token's subject); NULL when auth is off.
    owner text,
    -- 0 to 9, higher runs first: carried by every message of the task.
    priority smallint NOT NULL DEFAULT 0 CONSTRAINT tasks_priority_range CHECK (priority BETWEEN 0 AND 9),
    -- Crash attribution: this attempt runs alone on its worker (its death is
    -- this task's doing); a worker died while this task ran beside others, so
    -- it runs alone until an attempt ends with a verdict.
    alone boolean NOT NULL DEFAULT false,
    suspect boolean NOT NULL DEFAULT false,
    -- The named queue it waits in (its handler's, or one the submit named).
    queue text NOT NULL DEFAULT 'default' CONSTRAINT tasks_queue_not_empty CHECK (queue <> ''),
    -- Concurrency and rate limits (taskcore.model.limits): the keys its starts
    -- are limited under (NULL: not limited that way); parked by its concurrency
    -- limit until a task of its key ends; the start its rate limit reserved.
    concurrency_key text,
    rate_key text,
    throttled boolean NOT NULL DEFAULT false,
    rate_slot timestamptz,
    -- While the task is PENDING or PROCESSING, no other task of its type and
    -- owner has this key (tasks_unique_key_idx).
    unique_key text CONSTRAINT tasks_unique_key_not_empty CHECK (unique_key <> ''),
    -- Workflows: the tasks it runs after; blocked: PENDING, but not to start (and
    -- no wake-up published) until they have ended; run_anyway: start even if one
    -- FAILED or was CANCELLED; its workflow and its step's name there.
    after bigint[] NOT NULL DEFAULT '{}',
    run_anyway boolean NOT NULL DEFAULT false,
    blocked boolean NOT NULL DEFAULT false,
    workflow_id bigint REFERENCES workflows (id) ON DELETE SET NULL,
    step text,
    -- Progress (taskcore.model.progress): the last report of the running
    -- attempt, or of the last one; each report is a transition (version + 1).
    -- A claim clears it; COMPLETED is 1.0.
    progress double precision CONSTRAINT tasks_progress_range CHECK (progress BETWEEN 0 AND 1),
    progress_message text CONSTRAINT tasks_progress_message_length CHECK (char_length(progress_message) <= 200),
    progress_at timestamptz,
    -- Completion webhooks: the task's own receiver, told when it ends.
    callback_url text,
    -- Tracing: the submit's trace context (W3C traceparent/tracestate as a JSON
    -- object), so every attempt joins its trace; NULL when not traced.
    trace_context text,
    -- Tags and metadata (taskcore.model.tags): labels a listing filters on, and
    -- a JSON object kept for the client; given at submit, never changed.
    tags text[] NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}',
    -- The task browser's timeline: its last 20 attempts, oldest first, each
    -- {number, claimed_at, ended_at, outcome, error} (taskcore.model.attempts);
    -- a claim appends one, the attempt's end closes it.
    attempt_log jsonb NOT NULL DEFAULT '[]',
    -- A PROCESSING row without a lease would never be swept; a lease on any
    -- other row would make the sweeper release a task nobody holds.
    CONSTRAINT tasks_lease_iff_processing CHECK ((status = 'PROCESSING') = (lease_until IS NOT NULL)),
    CONSTRAINT tasks_finished_iff_final
        CHECK ((status IN ('COMPLETED', 'FAILED', 'CANCELLED')) = (finished_at IS NOT NULL))
);

-- Due PENDING tasks, for the sweeper's re-dispatch of unpublished rows.
CREATE INDEX tasks_pending_run_at_idx ON tasks (run_at) WHERE status = 'PENDING';

-- PENDING rows whose message is unconfirmed, oldest first, for the sweeper.
CREATE INDEX tasks_pending_undispatched_idx ON tasks (updated_at)
    WHERE status = 'PENDING' AND dispatched_at IS NULL;

-- Listings filtered by tags: tasks that have all of them (tags @> ARRAY[...]);
-- tagged tasks only, so untagged ones pay nothing for it (0024).
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags) WHERE tags <> '{}';

-- Lapsed leases, for the sweeper's release of abandoned attempts.
CREATE INDEX tasks_processing_lease_until_idx ON tasks (lease_until) WHERE status = 'PROCESSING';

-- list_by_status: newest first within one status.
CREATE INDEX tasks_status_created_at_idx ON tasks (status, created_at DESC, id DESC);

-- One owner's tasks in one status, newest first.
CREATE INDEX tasks_owner_status_created_at_idx ON tasks (owner, status, created_at DESC, id DESC);

-- Listing every task of an owner, or of everyone, newest first.
CREATE INDEX tasks_created_at_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_owner_created_at_idx ON tasks (owner, created_at DESC, id DESC);

-- Idempotency-Key: one task per (owner, key) while the key is kept. The
-- primary key makes concurrent duplicates wait for the first and then see it.
CREATE TABLE idempotency_keys (
    owner text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    task_id bigint REFERENCES tasks (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    -- Its first use took an unfinished task that had the unique key: a replay says so too.
    deduplicated boolean NOT NULL DEFAULT false,
    PRIMARY KEY (owner, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- The dashboard's per-minute finishes (minute_stats) over a recent window.
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- Workers reporting in every few seconds, for the dashboard's worker list.
CREATE TABLE workers (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    in_flight integer NOT NULL CONSTRAINT workers_in_flight_not_negative CHECK (in_flight >= 0),
    processed bigint NOT NULL CONSTRAINT workers_processed_not_negative CHECK (processed >= 0),
    -- messages the worker holds from the broker, unsettled (the wake-up census)
    held integer NOT NULL DEFAULT 0 CONSTRAINT workers_held_not_negative CHECK (held >= 0)
);

CREATE INDEX workers_seen_at_idx ON workers (seen_at);

-- Lost wake-ups: since when the due confirmed PENDING tasks have outnumbered
-- the messages the broker and the workers hold for them, if they do.
CREATE TABLE wake_up_census (
    id boolean PRIMARY KEY DEFAULT true CONSTRAINT wake_up_census_one_row CHECK (id),
    deficit_since timestamptz
);
INSERT INTO wake_up_census (id) VALUES (true);

CREATE INDEX tasks_pending_dispatched_at_idx ON tasks (dispatched_at) WHERE status = 'PENDING';

-- Paused queues: a row per queue ever paused; every claim reads it.
CREATE TABLE queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);

-- A limited claim counts its key's running tasks.
CREATE INDEX tasks_running_concurrency_key_idx ON tasks (type, concurrency_key)
    WHERE status = 'PROCESSING' AND concurrency_key IS NOT NULL;
-- A freed slot wakes its key's next parked task.
CREATE INDEX tasks_throttled_idx ON tasks (type, concurrency_key, priority DESC, id)
    WHERE status = 'PENDING' AND throttled;

-- Each rate scope's next free start (the generic cell rate algorithm's
-- theoretical arrival time).
CREATE TABLE rate_limits (
    scope text PRIMARY KEY,
    next_at timestamptz NOT NULL
);

-- The blocked tasks that run after a task that ended (asked at every end:
-- only blocked rows are in it, so it stays as small as the waiting steps).
CREATE INDEX tasks_blocked_after_idx ON tasks USING gin (after) WHERE status = 'PENDING' AND blocked;
-- A workflow's steps.
CREATE INDEX tasks_workflow_id_idx ON tasks (workflow_id) WHERE workflow_id IS NOT NULL;

-- Unique tasks: one unfinished task per type, owner (a missing one counts as
-- one) and unique key; concurrent submits of a key store one task.
CREATE UNIQUE INDEX tasks_unique_key_idx ON tasks (type, coalesce(owner, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('PENDING', 'PROCESSING');
-- Retention: finished tasks type by type, each up to its cutoff, never
-- walking the tasks a type keeps; and the types present.
CREATE INDEX tasks_type_finished_at_idx ON tasks (type, finished_at) WHERE finished_at IS NOT NULL;

-- Retention keeps a task while an idempotency key names it, and deleting a
-- task deletes its keys (ON DELETE CASCADE): both look keys up by task_id.
CREATE INDEX idempotency_keys_task_id_idx ON idempotency_keys (task_id);

-- Completion webhooks (taskcore.model.webhooks).
-- Receivers an owner registered for events of its tasks (a NULL owner's hear
-- every task's).
CREATE TABLE webhook_endpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,
    description text,
    created_at timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_owner_idx ON webhook_endpoints (owner);

CREATE TYPE webhook_delivery_status AS ENUM ('PENDING', 'DELIVERED', 'FAILED');

-- One event for one receiver: made in the transaction that ends the task
-- (tasks_webhook_events), sent by the workers; its owner is the endpoint's
-- (the task's, for its callback_url), who may list it. next_attempt_at: when a
-- PENDING one is due (a claim moves it past the sender's timeout, so one
-- whose sender died is due again).
CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event text NOT NULL,
    url text NOT NULL,
    endpoint_id bigint,
    owner text,
    payload jsonb NOT NULL,
    status webhook_delivery_status NOT NULL DEFAULT 'PENDING',
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    retry_from timestamptz NOT NULL,  -- the retry window's start: created_at, or a redelivery's time
    next_attempt_at timestamptz,
    delivered_at timestamptz,
    last_status integer,
    last_error text
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_task_id_idx ON webhook_deliveries (task_id);
CREATE INDEX webhook_deliveries_owner_id_idx ON webhook_deliveries (owner, id);

-- A task's end becomes its deliveries in the same transaction: the task's
-- callback_url, and each endpoint of its owner (or of no owner) that asked
-- for the event. Only a change into a final status fires it (the WHEN), so
-- the other transitions pay nothing.
CREATE FUNCTION taskcore_webhook_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event text := 'task.' || lower(NEW.status::text);
    payload jsonb;
BEGIN
    IF NEW.callback_url IS NULL AND NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e
        WHERE (e.owner IS NULL OR e.owner = NEW.owner) AND event = ANY (e.events)
    ) THEN
        RETURN NULL;
    END IF;
    payload := jsonb_build_object(
        'type', event,
        'timestamp', to_char(coalesce(NEW.finished_at, NEW.updated_at) AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_build_object(
            'id', NEW.id, 'type', NEW.type, 'status', NEW.status, 'queue', NEW.queue,
            'result', NEW.result, 'error', NEW.error, 'attempts', NEW.attempts,
            'max_attempts', NEW.max_attempts, 'owner', NEW.owner,
            'created_at', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'finished_at', to_char(NEW.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'workflow_id', NEW.workflow_id, 'step', NEW.step));
    INSERT INTO webhook_deliveries (task_id, event, url, endpoint_id, owner, payload, created_at, retry_from,
                                    next_attempt_at)
    SELECT NEW.id, event, NEW.callback_url, NULL, NEW.owner, payload, NEW.updated_at, NEW.updated_at,
           NEW.updated_at
    WHERE NEW.callback_url IS NOT NULL
    UNION ALL
    SELECT NEW.id, event, e.url, e.id, e.owner, payload, NEW.updated_at, NEW.updated_at, NEW.updated_at
    FROM webhook_endpoints e
    WHERE (e.owner IS NULL OR e.owner = NEW.owner) AND event = ANY (e.events);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_webhook_events AFTER UPDATE OF status ON tasks
FOR EACH ROW
WHEN (NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION taskcore_webhook_events();

-- Periodic schedules (migration 0021; taskcore.model.schedules).
-- A schedule: a cron expression (in its time zone) or an interval, the task
-- it submits, and when it fires next. owner: whose its tasks are (NULL for
-- a system schedule, declared in code); retired_at: a system schedule the
-- code no longer declares.
CREATE TABLE schedules (
    name text PRIMARY KEY,
    type text NOT NULL,
    input jsonb NOT NULL,
    cron text,
    timezone text NOT NULL DEFAULT 'UTC',
    every_s integer,
    queue text,
    priority smallint,
    catch_up text NOT NULL DEFAULT 'skip' CONSTRAINT schedules_catch_up CHECK (catch_up IN ('skip', 'latest', 'all')),
    catch_up_limit integer NOT NULL DEFAULT 100,
    owner text,
    system boolean NOT NULL DEFAULT false,
    paused boolean NOT NULL DEFAULT false,
    retired_at timestamptz,
    next_fire_at timestamptz,
    last_fire_at timestamptz,
    error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT schedules_cron_or_every CHECK ((cron IS NULL) <> (every_s IS NULL))
);
-- What every worker's scheduler asks: the active schedules, soonest first.
CREATE INDEX schedules_due_idx ON schedules (next_fire_at) WHERE NOT paused AND retired_at IS NULL;

-- One row per fire time that made its task, stored in that task's
-- transaction: the primary key is what makes a fire time one task however
-- many workers fire it. task_id has no foreign key: a task deleted by
-- retention leaves its firing (still a fire time that happened).
CREATE TABLE schedule_firings (
    schedule text NOT NULL REFERENCES schedules (name) ON DELETE CASCADE,
    fire_at timestamptz NOT NULL,
    task_id bigint,
    PRIMARY KEY (schedule, fire_at)
);
