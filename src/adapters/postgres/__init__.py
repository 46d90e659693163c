"""The PostgreSQL adapter: the task repository and the schema migrations.

Nothing here connects at import: build a ``PostgresRepository`` with plain
values, ``await open()`` it at start-up and ``await close()`` it at shutdown;
run ``await migrate(url)`` before the processes start.
"""

from taskcore.adapters.postgres.errors import RepositoryError
from taskcore.adapters.postgres.migrate import Migration, migrate, migration_files
from taskcore.adapters.postgres.repository import PostgresRepository

__all__ = ["Migration", "PostgresRepository", "RepositoryError", "migrate", "migration_files"]
