-- Lost wake-ups: the sweeper compares the due PENDING tasks whose messages
-- were confirmed against what the broker still holds for them.

-- Messages each worker holds from the broker, unsettled (received or running).
ALTER TABLE workers ADD COLUMN held integer NOT NULL DEFAULT 0
    CONSTRAINT workers_held_not_negative CHECK (held >= 0);

-- One row: since when the tasks have outnumbered their messages, if they do.
CREATE TABLE wake_up_census (
    id boolean PRIMARY KEY DEFAULT true CONSTRAINT wake_up_census_one_row CHECK (id),
    deficit_since timestamptz
);
INSERT INTO wake_up_census (id) VALUES (true);

-- The census counts and picks confirmed PENDING tasks by their confirmation.
CREATE INDEX tasks_pending_dispatched_at_idx ON tasks (dispatched_at) WHERE status = 'PENDING';
