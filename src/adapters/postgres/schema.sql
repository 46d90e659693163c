-- The current schema in full. Every change goes into a new numbered file in
-- migrations/ as well; a test checks that both give the same database.

CREATE TYPE task_status AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED');

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

-- Retention: finished tasks type by type, each up to its cutoff, never
-- walking the tasks a type keeps; and the types present.
CREATE INDEX tasks_type_finished_at_idx ON tasks (type, finished_at) WHERE finished_at IS NOT NULL;

-- Retention keeps a task while an idempotency key names it, and deleting a
-- task deletes its keys (ON DELETE CASCADE): both look keys up by task_id.
CREATE INDEX idempotency_keys_task_id_idx ON idempotency_keys (task_id);
