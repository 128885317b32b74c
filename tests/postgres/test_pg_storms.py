"""PostgreSQL: an account's storms, what every worker's gate estimates the server's limit from
(answers counted per account, one storm per closing, late reports, no slots while closed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from omnivid.journal._postgres_gate import IDLE, PostgresGateState

pytestmark = pytest.mark.anyio


async def test_the_first_429_of_an_open_account_begins_a_storm(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """A 429 on the open account is a new storm; another worker's 429 while it is closed is not."""
    first, second = gates
    await first.book(account, 10.0)
    storm = await first.storm(account, 0.5, sent_ago=0.01)
    assert storm.new and 0.4 < storm.closed_for <= 0.5
    assert not (await second.storm(account, 0.5, sent_ago=0.01)).new


async def test_a_429_of_a_request_sent_before_the_storm_is_part_of_it(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """Once the account reopened, a late 429 to a request sent before the storm began is not
    a new storm; one to a request sent after the reopening is."""
    first, second = gates
    await first.book(account, 10.0)
    assert (await first.storm(account, 0.05, sent_ago=0.0)).new
    await anyio.sleep(0.08)
    assert not (await second.storm(account, 0.05, sent_ago=1.0)).new
    await anyio.sleep(0.08)
    assert (await second.storm(account, 0.05, sent_ago=0.0)).new


async def test_a_storm_counts_every_workers_answers_since_the_previous_one(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """Answers reported by two workers (with their bookings and the 429 itself) count for the
    storm; the next storm counts from it and knows its pause."""
    first, second = gates
    await first.book(account, 1000.0, oks=0)
    await second.book(account, 1000.0, oks=0)
    await first.book(account, 1000.0, oks=7)
    await second.book(account, 1000.0, oks=5)
    storm = await first.storm(account, 0.05, sent_ago=0.0, oks=2)
    assert (storm.new, storm.oks, storm.pause) == (True, 14, None)  # no previous: an anchor
    assert storm.span is not None and storm.span > 0
    await anyio.sleep(0.08)
    await second.book(account, 1000.0, oks=9)
    again = await second.storm(account, 0.1, sent_ago=0.0)
    assert (again.new, again.oks) == (True, 9)
    assert again.pause is not None and 0.04 < again.pause <= 0.05
    assert again.span is not None and again.span >= 0.08


async def test_late_answers_count_for_the_storm_they_followed(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """Answers reported after a storm began (requests sent before it) are what refine()
    answers; the next storm counts only what came after that."""
    first, second = gates
    await first.book(account, 10.0)
    storm = await first.storm(account, 0.05, sent_ago=0.0, oks=6)
    await second.book(account, 10.0, oks=4)  # while closed: reported, no slot
    assert await first.refine(account, storm.at) == 4
    await anyio.sleep(0.08)
    await second.book(account, 10.0, oks=3)
    assert (await second.storm(account, 0.05, sent_ago=0.0)).oks == 3


async def test_refine_answers_nothing_once_another_storm_began(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """A storm's late count is void once the next storm began (it counts those answers)."""
    first, second = gates
    await first.book(account, 10.0)
    storm = await first.storm(account, 0.02, sent_ago=0.0)
    await anyio.sleep(0.05)
    assert (await second.storm(account, 0.02, sent_ago=0.0)).new
    assert await first.refine(account, storm.at) is None


async def test_a_booking_while_closed_takes_no_slot(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """While the account is closed a booking answers the wait until it reopens and takes no
    slot: after the reopening, slots are spaced at the rate set meanwhile."""
    first, second = gates
    await first.book(account, 100.0)
    await first.storm(account, 0.1, sent_ago=0.0)
    for _ in range(5):
        booking = await second.book(account)
        assert booking.closed and 0.0 < booking.wait <= 0.1
        assert booking.sent == 1
    await first.set_rate(account, 50.0)
    await anyio.sleep(0.12)
    started = time.monotonic()
    waits = [(await second.book(account)).wait for _ in range(3)]
    elapsed = time.monotonic() - started
    assert waits[0] < 0.01  # (5 slots taken while closed would put these 50 ms later)
    assert 0.04 - elapsed - 1e-3 <= waits[2] <= 0.04 + 1e-3


async def test_a_rate_change_keeps_the_slots_already_booked(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """Raising the rate does not hand out slots already booked: the next slot comes after them."""
    first, second = gates
    for _ in range(5):
        sent = time.monotonic()
        last = await first.book(account, 10.0)
    assert last.wait > 0.35
    await second.set_rate(account, 100.0)
    booking = await second.book(account)
    gone = time.monotonic() - sent  # at most, between the two bookings
    assert booking.wait >= last.wait + 0.1 - gone - 1e-3  # (a voided queue: about 0)


async def test_an_idle_account_anchors_a_new_count(
    gates: tuple[PostgresGateState, PostgresGateState],
    account: str,
    sql: Callable[..., list[tuple[Any, ...]]],
) -> None:
    """Booked again after IDLE seconds unused, an account counts from there (its bucket full
    again), not from a storm long past."""
    first, _ = gates
    await first.book(account, 1000.0)
    await first.storm(account, 0.0, sent_ago=0.0)
    await first.book(account, 1000.0, oks=50)
    sql(
        "UPDATE omnivid_gates SET seen_at = seen_at - make_interval(secs => %s) WHERE account = %s",
        IDLE + 1.0,
        account,
    )
    await first.book(account, 1000.0, oks=4)
    storm = await first.storm(account, 0.1, sent_ago=0.0, oks=3)
    assert (storm.new, storm.oks, storm.pause) == (True, 3, None)


async def test_no_limit_set_by_a_worker_is_not_seeded_again(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """A booking seeds the rate of an account nobody set; once a worker set "no limit", another
    worker's booking with its own starting rate leaves it unlimited."""
    first, second = gates
    assert (await first.book(account, 50.0)).rate == 50.0
    await first.set_rate(account, None)
    booking = await second.book(account, 50.0)
    assert booking.rate is None and booking.wait == 0.0


async def test_answers_reported_without_booking_count_for_the_storm(
    gates: tuple[PostgresGateState, PostgresGateState], account: str
) -> None:
    """During a cooldown nobody books: a worker's report() of its late answers adds them to
    the storm's count without taking a slot."""
    first, second = gates
    await first.book(account, 10.0)
    storm = await first.storm(account, 0.5, sent_ago=0.0)
    await second.report(account, 5)
    assert await first.refine(account, storm.at) == 5
    assert (await second.book(account)).sent == 1
