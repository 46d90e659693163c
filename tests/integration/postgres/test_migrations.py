"""The migrations build exactly the schema ``schema.sql`` describes, once, even under a race."""

from __future__ import annotations

import asyncio
from typing import Any, LiteralString

import psycopg
import pytest

from taskcore.adapters.postgres import migrate, migration_files
from taskcore.adapters.postgres.sql import read_sql
from tests.integration.databases import Databases

pytestmark = pytest.mark.integration

# What makes two schemas the same, read from the catalogs so that no client
# tool (pg_dump of a matching version) is needed. The bookkeeping table is
# migrate()'s own and not part of schema.sql.
CATALOG_QUERIES: dict[str, LiteralString] = {
    "relations": """
        SELECT relname, relkind FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relname NOT LIKE 'schema_migrations%'
        ORDER BY relname""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relname <> 'schema_migrations' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "constraints": """
        SELECT c.relname, co.conname, pg_get_constraintdef(co.oid)
        FROM pg_constraint co LEFT JOIN pg_class c ON c.oid = co.conrelid
        WHERE co.connamespace = 'public'::regnamespace AND c.relname IS DISTINCT FROM 'schema_migrations'
        ORDER BY c.relname, co.conname""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
        ORDER BY tablename, indexname""",
    "enums": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        WHERE t.typnamespace = 'public'::regnamespace
        ORDER BY t.typname, e.enumsortorder""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, max_value, cycle
        FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace ORDER BY proname""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2""",
}


async def describe_schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        described = {}
        for name, query in CATALOG_QUERIES.items():
            cursor = await connection.execute(query)
            described[name] = await cursor.fetchall()
        return described


async def applied_versions(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [version for (version,) in await cursor.fetchall()]


def all_versions() -> list[str]:
    return [migration.version for migration in migration_files()]


def test_migration_files_are_numbered_in_order() -> None:
    versions = all_versions()
    assert versions[0] == "0001_create_tasks"
    assert versions == sorted(versions)
    assert all(migration.sql.strip() for migration in migration_files())


async def test_the_migrations_build_the_schema_of_schema_sql(databases: Databases) -> None:
    migrated = await databases.create(migrated=False)
    from_schema = await databases.create(migrated=False)
    await migrate(migrated.url)
    async with await psycopg.AsyncConnection.connect(from_schema.url, autocommit=True) as connection:
        await connection.execute(read_sql("schema.sql"))

    expected = await describe_schema(from_schema.url)
    assert await describe_schema(migrated.url) == expected
    columns = {(table, column) for table, _, column, *_ in expected["columns"]}
    assert {("tasks", "status"), ("tasks", "created_at"), ("tasks", "updated_at")} <= columns


async def test_migrate_applies_each_migration_once(databases: Databases) -> None:
    database = await databases.create(migrated=False)

    assert await migrate(database.url) == all_versions()
    assert await migrate(database.url) == []
    assert await applied_versions(database.url) == all_versions()


async def test_the_template_copies_are_fully_migrated(databases: Databases) -> None:
    database = await databases.create()

    assert await migrate(database.url) == []


async def test_concurrent_migrate_calls_apply_each_migration_once(databases: Databases) -> None:
    database = await databases.create(migrated=False)

    outcomes = await asyncio.gather(*(migrate(database.url) for _ in range(5)))

    assert sorted(outcomes) == [[]] * 4 + [all_versions()]
    assert await applied_versions(database.url) == all_versions()
