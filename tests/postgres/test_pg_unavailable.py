"""PostgreSQL: a database that goes away gives a clear error, never a hang."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import psycopg
import pytest
from pghelp import OpenJournal

from omnivid import Task, TaskStatus, VideoRequest
from omnivid.journal._postgres_gate import PostgresGateState
from omnivid.journal._postgres_schema import DatabaseUnavailableError

pytestmark = pytest.mark.anyio

REQUEST = VideoRequest(model="Omni-Flash-Ext", prompt="a fox", duration=6)
SQL = Callable[..., list[tuple[Any, ...]]]


def terminate(sql: SQL, application_name: str = "omnivid") -> int:
    """Kill every backend of the test database opened by omnivid (as an admin would)."""
    rows = sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        "current_database() AND application_name = %s AND pid <> pg_backend_pid()",
        application_name,
    )
    return len(rows)


async def test_a_terminated_session_is_a_clear_error_then_the_pool_reconnects(
    open_journal: OpenJournal, sql: SQL
) -> None:
    """The server kills the journal's connections: the next call raises
    DatabaseUnavailableError naming the server, promptly; the one after works again."""
    journal = await open_journal(pool_size=1)
    await journal.claim("k", REQUEST, provider="apimart")
    assert terminate(sql) >= 1
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match=r"lost the database postgresql://"):
        await journal.renew()
    assert time.monotonic() - started < 2
    assert await journal.renew() == set()  # a new connection


async def test_a_statement_that_never_returns_is_cut_at_the_timeout(
    open_journal: OpenJournal, pg_url: str, batch: str
) -> None:
    """A row locked by someone else for longer than the timeout: the claim gives up after
    ``timeout`` with DatabaseUnavailableError (the server-side statement is cancelled)."""
    journal = await open_journal(timeout=0.5)
    await journal.add_jobs([("k", REQUEST)], provider="apimart")
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("BEGIN")
        blocker.execute(
            "SELECT 1 FROM omnivid_jobs WHERE batch = %s AND key = 'k' FOR UPDATE", (batch,)
        )
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match=r"did not answer within 0\.5 s"):
            await journal.claim("k", REQUEST, provider="apimart")
        assert time.monotonic() - started < 2
        blocker.execute("ROLLBACK")
    journal.db.timeout = 5.0  # (the pool's next connection may take longer on a busy host)
    assert (await journal.claim("k", REQUEST, provider="apimart")).status == "claimed"


async def test_lazy_records_wait_out_a_lost_connection(open_journal: OpenJournal, sql: SQL) -> None:
    """Records queued while the connection dies: the flush raises, the records stay queued
    (in order), and the next flush commits them."""
    journal = await open_journal(pool_size=1)
    task = Task(id="t1", provider="apimart", model="Omni-Flash-Ext", status=TaskStatus.PENDING)
    await journal.write_intent(
        "k", REQUEST, provider="apimart", fingerprint=REQUEST.fingerprint(), run="r", new=True
    )
    await journal.write_submitted("k", task, task_ids=["t1"], attempts=1)
    terminate(sql)
    journal.record_error("k", "note")
    journal.record_finished("k", attrs.evolve(task, status=TaskStatus.COMPLETED), cost=0.2)
    with pytest.raises(DatabaseUnavailableError):
        await journal.aflush()
    await journal.aflush()
    entry = (await journal.fetch(["k"]))["k"].entry
    assert (entry.state, entry.error, entry.cost) == ("completed", None, 0.2)


async def test_the_gate_raises_when_its_session_is_killed(pg_url: str, sql: SQL) -> None:
    """A worker's gate whose connection the server killed: acquire raises at once (the
    caller stops sending), then works again on a new connection."""
    gate = await PostgresGateState.open(pg_url, pool_size=1)
    try:
        await gate.acquire("acct-killed", 10.0)
        terminate(sql)
        with pytest.raises(DatabaseUnavailableError):
            await gate.acquire("acct-killed", 10.0)
        with anyio.fail_after(5):
            assert await gate.acquire("acct-killed", 10.0) >= 0.0
    finally:
        await gate.aclose()


async def test_a_closed_journal_refuses_work(open_journal: OpenJournal) -> None:
    """After aclose, awaited calls raise DatabaseUnavailableError and records are refused."""
    journal = await open_journal()
    await journal.aclose()
    assert journal.closed
    with pytest.raises(DatabaseUnavailableError, match="pool is closed"):
        await journal.claim("k", REQUEST, provider="apimart")
    with pytest.raises(Exception, match="closed"):
        journal.record_error("k", "late")
