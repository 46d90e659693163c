"""The PostgreSQL adapter: the task table's statements and the schema migrations.

Nothing here connects at import: build a ``PostgresDatabase`` with plain
values and the per-port adapters over it (``PostgresTasks``,
``PostgresRecovery``, ``PostgresPruner``, ``PostgresDashboard``,
``PostgresWorkers``), ``await open()`` the database at start-up and ``await
close()`` it at shutdown; run ``await migrate(url)`` before the processes
start.
"""

from taskcore.adapters.postgres.census import PostgresCensus
from taskcore.adapters.postgres.dashboard import PostgresDashboard, PostgresWorkers
from taskcore.adapters.postgres.database import PostgresDatabase, ReadReplica
from taskcore.adapters.postgres.errors import RepositoryError
from taskcore.adapters.postgres.migrate import Migration, migrate, migration_files
from taskcore.adapters.postgres.queues import PostgresQueues
from taskcore.adapters.postgres.recovery import PostgresRecovery
from taskcore.adapters.postgres.retention import PostgresPruner
from taskcore.adapters.postgres.schedules import PostgresSchedules
from taskcore.adapters.postgres.tasks import PostgresTasks
from taskcore.adapters.postgres.transactional import PostgresCommitNotices
from taskcore.adapters.postgres.webhooks import PostgresWebhooks
from taskcore.adapters.postgres.workflows import PostgresWorkflows

__all__ = [
    "Migration",
    "PostgresCensus",
    "PostgresCommitNotices",
    "PostgresDashboard",
    "PostgresDatabase",
    "PostgresPruner",
    "PostgresQueues",
    "PostgresRecovery",
    "PostgresSchedules",
    "PostgresTasks",
    "PostgresWebhooks",
    "PostgresWorkers",
    "PostgresWorkflows",
    "ReadReplica",
    "RepositoryError",
    "migrate",
    "migration_files",
]
