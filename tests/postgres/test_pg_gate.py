"""PostgreSQL: an account's rate state shared by workers (GCRA slots, shared cooldown)."""

from __future__ import annotations

import time

import pytest

from omnivid.journal._postgres_gate import PostgresGateState, account_id
from omnivid.journal._postgres_schema import DatabaseUnavailableError

pytestmark = pytest.mark.anyio


def test_an_account_is_named_without_its_key() -> None:
    """account_id keeps the provider and base URL and only a digest of the key."""
    name = account_id("apimart", "https://api.example/", "sk-secret")
    assert name.startswith("apimart https://api.example ") and "sk-secret" not in name


async def test_slots_are_spaced_by_the_shared_rate_across_workers(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """Ten bookings at 20/s, alternating between two workers without waiting: booking i is
    50 ms * i after the first by the database's clock, so its wait is that minus the time
    gone since (bounded by host timestamps taken around each call, whatever the load)."""
    first, second = gates
    spans: list[tuple[float, float, float]] = []  # (sent, wait, answered), host monotonic
    for i in range(10):
        sent = time.monotonic()
        wait = await (first, second)[i % 2].acquire(account, 20.0)
        spans.append((sent, wait, time.monotonic()))
    first_sent, _, first_answered = spans[0]
    for i, (sent, wait, answered) in enumerate(spans):
        due = 0.05 * i
        assert max(0.0, due - (answered - first_sent)) - 1e-3 <= wait
        assert wait <= max(0.0, due - (sent - first_answered)) + 1e-3
    sent = time.monotonic()
    state = await second.state(account)
    assert state.rate == 20.0
    assert 0.5 - (time.monotonic() - first_sent) - 1e-3 <= state.next_slot_in
    assert state.next_slot_in <= 0.5 - (sent - first_answered) + 1e-3


async def test_the_first_rate_seeds_the_account_and_set_rate_changes_it_for_all(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """The account's rate is shared: a later caller's own rate does not override it;
    set_rate does (with compare-and-set on the version)."""
    first, second = gates
    await first.acquire(account, 10.0)
    assert (await second.state(account)).rate == 10.0
    await second.acquire(account, 1000.0)  # booked at 10/s, the account's rate
    assert (await first.state(account)).next_slot_in == pytest.approx(0.2, abs=0.05)
    version = (await first.state(account)).version
    assert await first.set_rate(account, 5.0, adaptive={"slope": 0.5}, expect=version)
    assert not await second.set_rate(account, 7.0, expect=version)  # A changed it first
    state = await second.state(account)
    assert (state.rate, dict(state.adaptive), state.version) == (5.0, {"slope": 0.5}, version + 1)
    with pytest.raises(ValueError, match="rate"):
        await first.acquire(account, 0.0)


async def test_a_429_seen_by_one_worker_pauses_all(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """A closes the account for 0.5 s: B's next bookings wait for the deadline, B's state
    shows it, a shorter pause does not shorten it, and no limit (rate None) still waits.
    (Each figure is the deadline minus the time gone since, bounded by host timestamps.)"""
    first, second = gates
    assert await second.acquire(account) == 0.0  # no rate: nothing to wait for
    closing = time.monotonic()
    pause = await first.close_until(account, 0.5)
    closed = time.monotonic()

    def left(deadline: float, wait: float, sent: float) -> None:
        """``wait`` is ``deadline`` seconds after the close, less the time gone since."""
        assert deadline - (time.monotonic() - closing) - 1e-3 <= wait
        assert wait <= deadline - (sent - closed) + 1e-3

    left(0.5, pause, closing)
    sent = time.monotonic()
    left(0.5, await first.close_until(account, 0.1), sent)
    sent = time.monotonic()
    state = await second.state(account)
    left(0.5, state.closed_for, sent)
    assert state.closed_until == pytest.approx(state.now + state.closed_for, abs=1e-3)
    sent = time.monotonic()
    left(0.5, await second.acquire(account), sent)  # no rate: the deadline
    sent = time.monotonic()
    left(0.5, await second.acquire(account, 20.0), sent)  # seeds 20/s: the deadline...
    sent = time.monotonic()
    left(0.55, await first.acquire(account), sent)  # ...and the next slot 50 ms after


async def test_an_unknown_account_reads_as_open(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """state() of an account never used: no rate, open, version 0."""
    state = await gates[0].state(account)
    assert (state.rate, state.closed_for, state.closed_until, state.version) == (None, 0.0, None, 0)


async def test_without_the_database_acquire_raises(pg_url: str, account: str) -> None:
    """A closed pool: acquire raises DatabaseUnavailableError at once (callers stop sending;
    no local fallback)."""
    gate = await PostgresGateState.open(pg_url)
    await gate.acquire(account, 10.0)
    await gate.aclose()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="pool is closed"):
        await gate.acquire(account, 10.0)
    assert time.monotonic() - started < 1
