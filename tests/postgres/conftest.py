"""Fixtures for the PostgreSQL tests: a real server, a database of their own.

The server is ``OMNIVID_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``: trust auth, as on the development and CI machines). The session creates a
database ``omnivid_test_<random>`` there and drops it at the end; tests that need an empty
database (schema creation) get one of their own from ``fresh_url``.

Without a reachable server these tests skip, saying how to run them; under CI (``CI`` set)
they fail instead, so CI never passes by skipping them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
from pghelp import OpenJournal, as_url, create_database, drop_database

from omnivid.journal._postgres import PostgresJournal
from omnivid.journal._postgres_gate import PostgresGateState, account_id


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database for the whole session (tests use batch names of their own)."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def db_url(pg_url: str) -> str:
    """The session's database as a ``postgresql://`` URL (what ``journal=`` takes)."""
    return as_url(pg_url)


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """An empty database for one test."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def batch() -> str:
    """A batch name no other test uses."""
    return f"b-{secrets.token_hex(4)}"


@pytest.fixture
def sql(pg_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run a statement on the session's database from the outside (sync, autocommit)."""
    conn = psycopg.connect(pg_url, autocommit=True)

    def run(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


@pytest.fixture
async def open_journal(pg_url: str, batch: str) -> AsyncIterator[OpenJournal]:
    """Open journals on the test's batch (worker names w1, w2... unless given; short leases);
    all closed after the test."""
    opened: list[PostgresJournal] = []

    async def make(**options: Any) -> PostgresJournal:
        settings: dict[str, Any] = {
            "batch": batch,
            "worker": f"w{len(opened) + 1}",
            "lease": 30.0,
            "timeout": 5.0,
            "pool_size": 4,
        }
        settings.update(options)
        journal = await PostgresJournal.open(pg_url, **settings)
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        await journal.aclose()


@pytest.fixture
def expire(sql: Callable[..., list[tuple[Any, ...]]], batch: str) -> Callable[[str], None]:
    """End a job's lease now (as if its holder stopped renewing it), from the outside."""

    def run(key: str) -> None:
        sql(
            "UPDATE omnivid_jobs SET lease_until = now() - interval '1 second' "
            "WHERE batch = %s AND key = %s",
            batch,
            key,
        )

    return run


@pytest.fixture
async def gates(pg_url: str) -> AsyncIterator[tuple[PostgresGateState, PostgresGateState]]:
    """Two workers' gate states, each with a pool (connections) of its own."""
    first = await PostgresGateState.open(pg_url)
    second = await PostgresGateState.open(pg_url)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
def account() -> str:
    """An account no other test uses."""
    return account_id("apimart", "https://api.example/", secrets.token_hex(8))
