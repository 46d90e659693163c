-- The outbox in the task row: when the broker confirmed the task's message.
-- NULL on a PENDING row means "not known to be published": the sweeper
-- publishes it again. Any transition back to PENDING clears it.
ALTER TABLE tasks ADD COLUMN dispatched_at timestamptz;

-- PENDING rows whose message is unconfirmed, oldest first, for the sweeper.
CREATE INDEX tasks_pending_undispatched_idx ON tasks (updated_at)
    WHERE status = 'PENDING' AND dispatched_at IS NULL;
