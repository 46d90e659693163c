-- The task browser's timeline (README "Dashboard"): the task's last 20
-- attempts, oldest first, each {number, claimed_at, ended_at, outcome, error}
-- (taskcore.model.attempts). Written by the statements that already claim a
-- task or save its verdict, never by a statement of its own. A constant
-- default: added at once, no table rewrite.
ALTER TABLE tasks ADD COLUMN attempt_log jsonb NOT NULL DEFAULT '[]';
