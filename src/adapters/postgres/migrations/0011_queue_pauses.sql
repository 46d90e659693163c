-- Paused queues: a row per queue ever paused; every claim reads it.
CREATE TABLE queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);
