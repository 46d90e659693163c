-- Listing every task of an owner, or of everyone, newest first.
CREATE INDEX tasks_created_at_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_owner_created_at_idx ON tasks (owner, created_at DESC, id DESC);
