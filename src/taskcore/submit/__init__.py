"""The submit/read path: what clients call (submit, read, wait, cancel, retry)."""
