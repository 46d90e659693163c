-- Who submitted the task (the token's subject); NULL when auth is off.
ALTER TABLE tasks ADD COLUMN owner text;

-- One owner's tasks in one status, newest first.
CREATE INDEX tasks_owner_status_created_at_idx ON tasks (owner, status, created_at DESC, id DESC);
