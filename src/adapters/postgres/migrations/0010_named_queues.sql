-- Named queues: the queue a task waits in (its handler's, or one the submit
-- named). Tasks from before named queues are in the default one.
ALTER TABLE tasks ADD COLUMN queue text NOT NULL DEFAULT 'default'
    CONSTRAINT tasks_queue_not_empty CHECK (queue <> '');
