-- Retention keeps a task while an idempotency key names it, and deleting a
-- task deletes its keys (ON DELETE CASCADE): both look keys up by task_id,
-- which without this index is a scan of the whole keys table per task.
CREATE INDEX idempotency_keys_task_id_idx ON idempotency_keys (task_id);
