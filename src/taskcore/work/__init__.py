"""The worker path: consume wake-ups, claim, run, record the verdict, recover."""
