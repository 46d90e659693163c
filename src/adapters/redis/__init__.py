"""The Redis adapters: a cache of task status, optional at run time, and the change feed.

Standalone Redis or Redis Cluster; see ``cache`` for the entry format and why
an older task state can never overwrite a newer one.
"""

from taskcore.adapters.redis.breaker import BreakerState, CircuitBreaker
from taskcore.adapters.redis.cache import RedisCache
from taskcore.adapters.redis.changes import RedisChangeFeed

__all__ = ["BreakerState", "CircuitBreaker", "RedisCache", "RedisChangeFeed"]
