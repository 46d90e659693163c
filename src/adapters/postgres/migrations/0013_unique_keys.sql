-- Unique tasks: while a PENDING or PROCESSING task has a unique key, no other
-- task of its type and owner (a missing owner counts as one) has it, so
-- concurrent submits of one key store one task. Only rows with a key are in
-- the index. Building it scans the table under a write lock once (the new
-- column is NULL everywhere, so the index starts empty): brief, but a
-- migration of a very large table should run in a quiet moment.
ALTER TABLE tasks ADD COLUMN unique_key text CONSTRAINT tasks_unique_key_not_empty CHECK (unique_key <> '');
CREATE UNIQUE INDEX tasks_unique_key_idx ON tasks (type, coalesce(owner, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('PENDING', 'PROCESSING');

-- An Idempotency-Key whose first use took an unfinished task that had the
-- unique key, instead of storing one: a replay answers the same way.
ALTER TABLE idempotency_keys ADD COLUMN deduplicated boolean NOT NULL DEFAULT false;
