"""PostgreSQL: the schema (created on first use, versioned) and errors at open."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import anyio
import psycopg
import pytest

from omnivid.errors import ConfigurationError
from omnivid.journal._postgres import PostgresJournal
from omnivid.journal._postgres_schema import SCHEMA_VERSION, DatabaseUnavailableError

pytestmark = pytest.mark.anyio


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'omnivid%%'"
        ).fetchall()
    return {name for (name,) in rows}


async def test_first_use_creates_the_tables_and_the_version(fresh_url: str) -> None:
    """The first journal opened on an empty database creates every table and records the
    schema version in omnivid_meta."""
    assert _tables(fresh_url) == set()
    journal = await PostgresJournal.open(fresh_url, batch="clips")
    await journal.aclose()
    assert _tables(fresh_url) == {
        "omnivid_meta",
        "omnivid_jobs",
        "omnivid_budgets",
        "omnivid_gates",
    }
    with psycopg.connect(fresh_url) as conn:
        rows = conn.execute("SELECT name, value FROM omnivid_meta").fetchall()
    assert rows == [("schema", str(SCHEMA_VERSION))]


async def test_concurrent_first_users_do_not_race(fresh_url: str) -> None:
    """Eight processes' worth of first opens at once: the advisory lock lets one create the
    tables; every open succeeds."""
    journals: list[PostgresJournal] = []

    async def one(i: int) -> None:
        journals.append(await PostgresJournal.open(fresh_url, batch="clips", worker=f"w{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    for journal in journals:
        await journal.aclose()
    assert len(journals) == 8


async def test_a_newer_schema_is_refused_naming_both_versions(fresh_url: str) -> None:
    """A database whose omnivid tables are newer than this omnivid knows is refused."""
    journal = await PostgresJournal.open(fresh_url, batch="clips")
    await journal.aclose()
    with psycopg.connect(fresh_url) as conn:
        conn.execute("UPDATE omnivid_meta SET value = %s", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(ConfigurationError) as caught:
        await PostgresJournal.open(fresh_url, batch="clips")
    message = str(caught.value)
    assert f"version {SCHEMA_VERSION + 1}" in message and f"version {SCHEMA_VERSION}" in message
    assert "upgrade omnivid" in message


async def test_a_malformed_url_is_one_clear_line() -> None:
    """A URL libpq cannot parse gives a ConfigurationError saying so."""
    with pytest.raises(ConfigurationError, match="malformed PostgreSQL URL"):
        await PostgresJournal.open("postgresql://a b c", batch="clips")


async def test_an_unreachable_server_is_one_clear_line() -> None:
    """Nothing listening: DatabaseUnavailableError naming the server, without the password,
    quickly."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        await PostgresJournal.open(f"postgresql://bob:s3cret@127.0.0.1:{port}/x", batch="c")
    message = str(caught.value)
    assert f"postgresql://bob@127.0.0.1:{port}/x" in message and "s3cret" not in message
    assert "\n" not in message and time.monotonic() - started < 3


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


async def test_a_server_that_never_answers_is_not_a_hang(silent_server: int) -> None:
    """A server that accepts and says nothing: the open gives up after ``timeout``."""
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match=r"no answer within 0\.3 s"):
        await PostgresJournal.open(
            f"postgresql://postgres@127.0.0.1:{silent_server}/x", batch="c", timeout=0.3
        )
    assert time.monotonic() - started < 2


async def test_bad_options_are_refused(pg_url: str) -> None:
    """An empty batch name or a non-positive lease is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="batch"):
        await PostgresJournal.open(pg_url, batch=" ")
    with pytest.raises(ConfigurationError, match="lease"):
        await PostgresJournal.open(pg_url, batch="clips", lease=0)
