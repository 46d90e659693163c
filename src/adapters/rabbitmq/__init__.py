"""The task queue on RabbitMQ: persistent confirmed messages, delay buckets, a dead-letter queue."""

from taskcore.adapters.rabbitmq.queue import RabbitQueue

__all__ = ["RabbitQueue"]
