-- Progress (taskcore.model.progress): the last report of the running attempt,
-- or of the last one; each report is a transition (version + 1). A claim
-- clears it; COMPLETED is 1.0.
ALTER TABLE tasks ADD COLUMN progress double precision
    CONSTRAINT tasks_progress_range CHECK (progress BETWEEN 0 AND 1);
ALTER TABLE tasks ADD COLUMN progress_message text
    CONSTRAINT tasks_progress_message_length CHECK (char_length(progress_message) <= 200);
ALTER TABLE tasks ADD COLUMN progress_at timestamptz;
