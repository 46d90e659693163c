"""Workflows: graphs of tasks that run after each other, submitted at once."""
