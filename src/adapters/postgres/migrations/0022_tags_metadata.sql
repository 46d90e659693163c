-- Tags and metadata (taskcore.model.tags): given at submit, never changed.
-- Constant defaults: added at once, no table rewrite. The GIN index answers
-- a listing's "has all these tags" (tags @> ARRAY[...]).
ALTER TABLE tasks ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags);
