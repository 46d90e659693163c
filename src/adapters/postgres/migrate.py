"""Schema migrations: ordered plain-SQL files, each applied once.

``migrate()`` is what ``taskcore migrate`` and deployments run before the
processes start. It is safe to run from several processes at once: an
advisory lock serialises them, and whoever comes second finds nothing left to
apply. Each file runs in its own transaction together with its bookkeeping
row, so a failing migration leaves neither trace nor a half-applied schema.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import LiteralString, NamedTuple

import psycopg

from taskcore.adapters.postgres.errors import wrap_errors
from taskcore.adapters.postgres.sql import queries, read_sql

# "taskcore" in ASCII: a fixed key every taskcore process agrees on.
MIGRATION_LOCK_KEY = 0x7461736B636F7265

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class Migration(NamedTuple):
    version: str
    """The file name without ``.sql``, e.g. ``0001_create_tasks``; what ``schema_migrations`` records."""
    sql: LiteralString


def migration_files() -> list[Migration]:
    """Every migration shipped with the package, in the order to apply them."""
    names = sorted(
        entry.name
        for entry in files("taskcore.adapters.postgres").joinpath("migrations").iterdir()
        if entry.name.endswith(".sql")
    )
    numbers: set[str] = set()
    migrations = []
    for name in names:
        match = _FILE_NAME.match(name)
        if match is None:
            raise ValueError(f"migration file {name!r} is not named NNNN_description.sql")
        if match.group(1) in numbers:
            raise ValueError(f"two migration files are numbered {match.group(1)}")
        numbers.add(match.group(1))
        migrations.append(Migration(version=name.removesuffix(".sql"), sql=read_sql(f"migrations/{name}")))
    return migrations


async def migrate(conninfo: str, *, connect_timeout_s: float = 10.0) -> list[str]:
    """Apply the migrations this database has not seen; return their versions in order.

    The lock is released by closing the connection, which also covers a
    migration that fails half-way.
    """
    applied: list[str] = []
    with wrap_errors("migrate the task database"):
        async with await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(2, round(connect_timeout_s))
        ) as connection:
            await connection.execute(queries["lock_migrations"], {"key": MIGRATION_LOCK_KEY})
            await connection.execute(queries["create_migrations_table"])
            cursor = await connection.execute(queries["applied_migrations"])
            done = {version for (version,) in await cursor.fetchall()}
            for migration in migration_files():
                if migration.version in done:
                    continue
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(queries["record_migration"], {"version": migration.version})
                applied.append(migration.version)
    return applied
