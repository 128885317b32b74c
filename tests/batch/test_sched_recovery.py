"""A storm of random 429s against a known limit, through ``client.map`` on the simulator.

The simulator limits the key to 200 requests per real second (bucket 100) and announces
``Retry-After: 0.05``; the client starts from a learnt rate (``gate.resume_from``), runs
instant jobs for ``RUN`` real seconds, and from ``STORM_AT`` for ``STORM_FOR`` seconds 60% of
requests get a random 429. The gate's rate just before the storm is compared with its rate at
the end, under the default policy ("recover") and the one before it ("aimd").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import anyio
import pytest
from schedhelp import IMMEDIATE, client, gemini

import omnivid
from omnivid._http.gate import AccountGate, RatePolicy
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

RATE, LEARNT = 200.0, 194.0  # the server's limit and the rate the client resumes from
RUN, STORM_AT, STORM_FOR = 1.2, 0.5, 0.15  # real seconds


def endless() -> Iterator[omnivid.VideoRequest]:
    """Jobs until the batch is left."""
    for i in itertools.count():
        yield gemini(i)


async def _storm_run(sim: Simulator, policy: RatePolicy) -> tuple[float, AccountGate, int]:
    """The run: (the gate's rate just before the storm, the gate, 429s during the storm)."""
    c = client(sim, poll=IMMEDIATE)
    c.gate = AccountGate(policy=policy, time_scale=c.time_scale)
    assert c.gate.resume_from(LEARNT)
    before: list[float] = []
    storm_429s: list[int] = []

    async def storm() -> None:
        await anyio.sleep(STORM_AT)
        before.append(c.gate.rate or 0.0)
        start = sim.stats.rate_limited
        sim.configure(rate_limit_rate=0.6)
        await anyio.sleep(STORM_FOR)
        sim.configure(rate_limit_rate=0.0)
        storm_429s.append(sim.stats.rate_limited - start)

    async with c, anyio.create_task_group() as tg:
        tg.start_soon(storm)
        with anyio.move_on_after(RUN):
            async with c.map(endless(), max_in_flight=64) as outcomes:
                async for _ in outcomes:
                    pass
    return before[0], c.gate, storm_429s[0]


@pytest.mark.parametrize(
    "sim_options", [{"instant": True, "rps": RATE, "burst": 100, "retry_after_seconds": 0.05}]
)
async def test_a_storm_of_random_429s_leaves_the_rate_alone(sim: Simulator) -> None:
    """Policy "recover": the storm's cooldowns are honoured, the rate is not cut."""
    before, gate, storm_429s = await _storm_run(sim, "recover")
    assert storm_429s >= 3  # the storm happened, over several cooldowns
    assert gate.cuts == 0 and gate.ignored >= 2
    assert gate.rate is not None and gate.rate >= before


@pytest.mark.parametrize(
    "sim_options", [{"instant": True, "rps": RATE, "burst": 100, "retry_after_seconds": 0.05}]
)
async def test_the_policy_before_collapses_in_the_same_storm(sim: Simulator) -> None:
    """Policy "aimd" (before): every cooldown of the storm cuts, and the rate is still far
    below where it was when the run ends."""
    before, gate, storm_429s = await _storm_run(sim, "aimd")
    assert storm_429s >= 3
    assert gate.cuts >= 2
    assert gate.rate is not None and gate.rate < 0.8 * before
