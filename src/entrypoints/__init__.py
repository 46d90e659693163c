"""The composition root and the processes: HTTP API, worker, CLI."""
