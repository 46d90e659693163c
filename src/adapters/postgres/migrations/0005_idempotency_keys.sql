-- Idempotency-Key: one task per (owner, key) while the key is kept. The
-- primary key makes concurrent duplicates wait for the first and then see it.
CREATE TABLE idempotency_keys (
    owner text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    task_id bigint REFERENCES tasks (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
