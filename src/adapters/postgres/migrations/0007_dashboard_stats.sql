-- The dashboard: tasks finished in a recent window, and workers reporting in.

-- minute_stats reads the last minutes of finishes; partial, since most rows
-- of a busy table are final but the index only serves the window's range.
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- One row per worker process, upserted every few seconds while it runs.
CREATE TABLE workers (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    in_flight integer NOT NULL CONSTRAINT workers_in_flight_not_negative CHECK (in_flight >= 0),
    processed bigint NOT NULL CONSTRAINT workers_processed_not_negative CHECK (processed >= 0)
);

CREATE INDEX workers_seen_at_idx ON workers (seen_at);
