-- Retention deletes finished tasks type by type, each up to its cutoff: this
-- index lets it reach exactly those, never walking the tasks a type keeps
-- (forever, or longer than the others), and lists the types present.
CREATE INDEX tasks_type_finished_at_idx ON tasks (type, finished_at) WHERE finished_at IS NOT NULL;

-- Retention keeps a task while an idempotency key names it, and deleting a
-- task deletes its keys (ON DELETE CASCADE): both look keys up by task_id,
-- which without this index is a scan of the whole keys table per task.
CREATE INDEX idempotency_keys_task_id_idx ON idempotency_keys (task_id);
