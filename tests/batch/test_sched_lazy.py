"""Lazy input: a huge generator is pulled only as far as max_in_flight plus a small buffer."""

from __future__ import annotations

import pytest
from schedhelp import IMMEDIATE, Counting, FakeApi, client, gemini

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_twenty_thousand_instant_jobs_stay_bounded(sim: Simulator) -> None:
    """20,000 instant jobs: never more than max_in_flight + prefetch pulled ahead."""
    source = Counting(20_000)
    ahead = received = 0
    async with client(sim, poll=IMMEDIATE) as c:
        api = FakeApi(c)
        async with c.map(source, max_in_flight=32, prefetch=16) as outcomes:
            async for _ in outcomes:
                received += 1
                ahead = max(ahead, source.pulled - received)
    assert received == 20_000 and api.submits == 20_000
    assert ahead <= 32 + 16


async def test_a_slow_consumer_holds_back_the_input(sim: Simulator) -> None:
    """While nobody reads the outcomes, no more than the window is pulled."""
    source = Counting(1_000)
    async with client(sim, poll=IMMEDIATE) as c:
        FakeApi(c)
        async with c.map(source, max_in_flight=8, prefetch=4) as outcomes:
            async for _ in outcomes:
                break  # read one, then stall: the window fills and the feeder waits
            pulled_after_first = source.pulled
    assert pulled_after_first <= 8 + 4 + 1


async def test_early_exit_pulls_only_the_window(sim: Simulator) -> None:
    """Leaving after 5 outcomes of a 100,000-job generator pulled only a few dozen."""
    source = Counting(100_000, gemini)
    async with client(sim) as c, c.map(source, max_in_flight=10) as outcomes:
        n = 0
        async for _ in outcomes:
            n += 1
            if n == 5:
                break
    assert source.pulled <= 5 + 10 + 10 + 1  # received + in flight + default prefetch
