"""One rate limit per account across workers: AccountGate sharing its state in PostgreSQL
(slots from database time, a 429 seen by one client pausing the other), on the simulator."""

from __future__ import annotations

import time

import anyio
import pytest

import omnivid
from omnivid import VideoRequest
from omnivid.errors import DatabaseUnavailableError
from omnivid.journal._postgres_gate import PostgresGateState, account_id
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

REQUEST = VideoRequest(model="gemini-omni-flash-preview", prompt="a fox")


def client(sim: Simulator, **options: object) -> omnivid.AsyncClient:
    """An unopened client on ``sim`` (no retries: each request is one exchange)."""
    return omnivid.AsyncClient(
        "apimart",
        api_key=sim.api_key,
        base_url=sim.base_url("apimart"),
        retry=omnivid.RetryPolicy(max_retries=0),
        time_scale=0.001,
        **options,  # type: ignore[arg-type]
    )


def test_the_client_names_its_account_as_the_journal_does() -> None:
    """AsyncClient.account is the journal's account_id (provider, URL, a digest of the key)."""
    c = omnivid.AsyncClient("apimart", api_key="sk-x", base_url="http://127.0.0.1:9/apimart/")
    assert c.account == account_id("apimart", "http://127.0.0.1:9/apimart", "sk-x")
    assert "sk-x" not in c.account


async def test_a_429_seen_by_one_client_pauses_the_other(
    sim: Simulator, gates: tuple[PostgresGateState, PostgresGateState]
) -> None:
    """Client A gets a 429 (Retry-After 0.4 s): client B, sharing the account's state, sends
    nothing until the cooldown ends, by the database's clock."""
    sim.configure(retry_after_seconds=0.4)
    async with client(sim) as a, client(sim) as b:
        a.gate.share(gates[0], a.account)
        b.gate.share(gates[1], b.account)
        task = await a.submit(REQUEST)
        sim.configure(rate_limit_rate=1.0)  # the next answer is a 429
        with pytest.raises(omnivid.errors.RateLimitError):
            await a.get(task.id)
        sim.configure(rate_limit_rate=0.0)
        closed_at = time.monotonic()
        pacing = a.gate.shared
        assert pacing is not None
        await pacing.aclose()  # the cooldown is pushed
        assert (await gates[1].state(b.account)).closed_for > 0.2
        await b.get(task.id)
        assert time.monotonic() - closed_at >= 0.35


async def test_slots_are_spaced_over_both_clients(
    sim: Simulator, gates: tuple[PostgresGateState, PostgresGateState]
) -> None:
    """Two clients at a shared 20/s: 12 requests, 6 each at once, take at least 11 slots of
    50 ms in all (each client alone would take half that)."""
    async with client(sim, rate_limit=20.0) as a, client(sim, rate_limit=20.0) as b:
        a.gate.share(gates[0], a.account)
        b.gate.share(gates[1], b.account)
        await gates[0].set_rate(a.account, 20.0)
        task = await a.submit(REQUEST)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon((a, b)[i % 2].get, task.id)
        assert time.monotonic() - started >= 11 * 0.05 - 0.06


async def test_no_request_without_the_database(sim: Simulator, pg_url: str) -> None:
    """A shared state whose database is gone: the request is not sent (the booking raises
    DatabaseUnavailableError), never paced by the process alone."""
    state = await PostgresGateState.open(pg_url, pool_size=1, timeout=1.0)
    async with client(sim) as a:
        a.gate.share(state, a.account)
        task = await a.submit(REQUEST)
        await state.aclose()
        polls = sim.stats.polls
        with pytest.raises(DatabaseUnavailableError):
            await a.get(task.id)
        assert sim.stats.polls == polls


async def test_gate_tables_of_schema_1_are_migrated(fresh_url: str) -> None:
    """A database of schema 1 (no slot or answer counts, no storm) is brought to schema 3."""
    import psycopg

    state = await PostgresGateState.open(fresh_url)
    await state.aclose()
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        for column in ("sent", "oks", "storm_at", "storm_oks", "storm_pause", "rate_set"):
            conn.execute(f"ALTER TABLE omnivid_gates DROP COLUMN {column}")
        conn.execute("UPDATE omnivid_meta SET value = '1' WHERE name = 'schema'")
    state = await PostgresGateState.open(fresh_url)
    try:
        booking = await state.book("acct-migrated", 10.0, oks=3)
        assert (booking.sent, booking.oks) == (1, 3)
        assert (await state.storm("acct-migrated", 0.5)).new
    finally:
        await state.aclose()
    with psycopg.connect(fresh_url) as conn:
        row = conn.execute("SELECT value FROM omnivid_meta WHERE name = 'schema'").fetchone()
    assert row == ("3",)


def test_the_sqlite_journal_points_a_url_to_the_shared_one() -> None:
    """Journal.open with a postgresql:// URL says how to open a PostgreSQL journal."""
    with pytest.raises(omnivid.errors.ConfigurationError, match="batch=NAME"):
        omnivid.Journal.open("postgresql://postgres@127.0.0.1/x")
