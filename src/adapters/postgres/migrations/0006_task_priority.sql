-- Priority 0 to 9, higher runs first: carried by every message of the task
-- (the broker orders its backlog by it). Existing tasks get the default.
ALTER TABLE tasks ADD COLUMN priority smallint NOT NULL DEFAULT 0
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN 0 AND 9);
