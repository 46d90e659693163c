-- Concurrency and rate limits (taskcore.model.limits): the keys a task's
-- starts are limited under, set at submit (NULL: not limited that way).
ALTER TABLE tasks ADD COLUMN concurrency_key text;
ALTER TABLE tasks ADD COLUMN rate_key text;
-- Parked by its concurrency limit: its wake-up was dropped, and the next task
-- of its key to end wakes it (the census does not count it as missing one).
ALTER TABLE tasks ADD COLUMN throttled boolean NOT NULL DEFAULT false;
-- The start its rate limit reserved for it, once deferred (its run_at).
ALTER TABLE tasks ADD COLUMN rate_slot timestamptz;

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
