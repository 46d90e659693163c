-- Periodic schedules (taskcore.model.schedules).

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
