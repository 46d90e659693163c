"""Implementations of the core's ports: memory, PostgreSQL, Redis, RabbitMQ."""
