-- Workflows (taskcore.model.workflows): tasks that run after other tasks.
CREATE TABLE workflows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    owner text,
    created_at timestamptz NOT NULL
);

-- The tasks it runs after; blocked: PENDING, but not to start (and no wake-up
-- published) until they have ended; run_anyway: start even if one FAILED or
-- was CANCELLED; its workflow and its step's name there.
ALTER TABLE tasks ADD COLUMN after bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN run_anyway boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN blocked boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN workflow_id bigint REFERENCES workflows (id) ON DELETE SET NULL;
ALTER TABLE tasks ADD COLUMN step text;

-- The blocked tasks that run after a task that ended (asked at every end:
-- only blocked rows are in it, so it stays as small as the waiting steps).
CREATE INDEX tasks_blocked_after_idx ON tasks USING gin (after) WHERE status = 'PENDING' AND blocked;
-- A workflow's steps.
CREATE INDEX tasks_workflow_id_idx ON tasks (workflow_id) WHERE workflow_id IS NOT NULL;
