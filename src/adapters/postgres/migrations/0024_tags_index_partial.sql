-- The tags index holds tagged tasks only. A GIN index over every row gets an
-- entry for each new version of each row, and a task writes four (insert,
-- confirmation, claim, verdict): untagged tasks, most of them, paid for an
-- index they are never found through. Listings by tag say `tags <> '{}'`,
-- which lets the planner use this one.
DROP INDEX IF EXISTS tasks_tags_idx;
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags) WHERE tags <> '{}';
