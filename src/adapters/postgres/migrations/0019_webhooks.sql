-- Completion webhooks (taskcore.model.webhooks).

-- A task's own receiver, told when it ends.
ALTER TABLE tasks ADD COLUMN callback_url text;

-- Receivers an owner registered for events of its tasks (a NULL owner's hear
-- every task's).
CREATE TABLE webhook_endpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,
    description text,
    created_at timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_owner_idx ON webhook_endpoints (owner);

CREATE TYPE webhook_delivery_status AS ENUM ('PENDING', 'DELIVERED', 'FAILED');

-- One event for one receiver: made in the transaction that ends the task
-- (tasks_webhook_events), sent by the workers; its owner is the endpoint's
-- (the task's, for its callback_url), who may list it. next_attempt_at: when a
-- PENDING one is due (a claim moves it past the sender's timeout, so one
-- whose sender died is due again).
CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event text NOT NULL,
    url text NOT NULL,
    endpoint_id bigint,
    owner text,
    payload jsonb NOT NULL,
    status webhook_delivery_status NOT NULL DEFAULT 'PENDING',
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    retry_from timestamptz NOT NULL,  -- the retry window's start: created_at, or a redelivery's time
    next_attempt_at timestamptz,
    delivered_at timestamptz,
    last_status integer,
    last_error text
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_task_id_idx ON webhook_deliveries (task_id);
CREATE INDEX webhook_deliveries_owner_id_idx ON webhook_deliveries (owner, id);

-- A task's end becomes its deliveries in the same transaction: the task's
-- callback_url, and each endpoint of its owner (or of no owner) that asked
-- for the event. Only a change into a final status fires it (the WHEN), so
-- the other transitions pay nothing.
CREATE FUNCTION taskcore_webhook_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event text := 'task.' || lower(NEW.status::text);
    payload jsonb;
BEGIN
    IF NEW.callback_url IS NULL AND NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e
        WHERE (e.owner IS NULL OR e.owner = NEW.owner) AND event = ANY (e.events)
    ) THEN
        RETURN NULL;
    END IF;
    payload := jsonb_build_object(
        'type', event,
        'timestamp', to_char(coalesce(NEW.finished_at, NEW.updated_at) AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_build_object(
            'id', NEW.id, 'type', NEW.type, 'status', NEW.status, 'queue', NEW.queue,
            'result', NEW.result, 'error', NEW.error, 'attempts', NEW.attempts,
            'max_attempts', NEW.max_attempts, 'owner', NEW.owner,
            'created_at', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'finished_at', to_char(NEW.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'workflow_id', NEW.workflow_id, 'step', NEW.step));
    INSERT INTO webhook_deliveries (task_id, event, url, endpoint_id, owner, payload, created_at, retry_from,
                                    next_attempt_at)
    SELECT NEW.id, event, NEW.callback_url, NULL, NEW.owner, payload, NEW.updated_at, NEW.updated_at,
           NEW.updated_at
    WHERE NEW.callback_url IS NOT NULL
    UNION ALL
    SELECT NEW.id, event, e.url, e.id, e.owner, payload, NEW.updated_at, NEW.updated_at, NEW.updated_at
    FROM webhook_endpoints e
    WHERE (e.owner IS NULL OR e.owner = NEW.owner) AND event = ANY (e.events);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_webhook_events AFTER UPDATE OF status ON tasks
FOR EACH ROW
WHEN (NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION taskcore_webhook_events();
