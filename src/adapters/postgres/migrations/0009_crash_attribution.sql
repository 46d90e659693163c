-- Crash attribution: a worker that dies while running several tasks charges
-- none of them; each becomes suspect and runs alone next, and an attempt
-- that ran alone is charged when its worker dies (Task.release).
ALTER TABLE tasks ADD COLUMN alone boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN suspect boolean NOT NULL DEFAULT false;
