"""Periodic schedules: their fire times, the API's admin, and the scheduler every worker runs."""
