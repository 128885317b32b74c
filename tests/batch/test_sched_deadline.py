"""Per-task deadlines: a timeout outcome that keeps the task id, and a slot kept till the end."""

from __future__ import annotations

import anyio
import pytest
from schedhelp import client, collect, gemini

from omnivid.errors import TaskTimeoutError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_deadline_gives_a_timeout_carrying_the_task_id(sim: Simulator) -> None:
    """A task past its deadline comes back as TaskTimeoutError with its task id."""
    jobs = [("slow", gemini(0, "[[duration=2000]]")), ("fast", gemini(1, "[[duration=10]]"))]
    async with client(sim) as c, c.map(jobs, deadline=100.0) as out:
        got = {o.key: o for o in await collect(out)}
    slow = got["slow"]
    assert isinstance(slow.error, TaskTimeoutError) and not slow.ok
    assert slow.task_id is not None and slow.error.task_id == slow.task_id
    assert slow.task_id in sim.stats.tasks and sim.task_status(slow.task_id) != "completed"
    assert got["fast"].ok


async def test_deadline_counts_from_the_submit(sim: Simulator) -> None:
    """The timeout arrives about `deadline` provider seconds after the submit."""
    async with client(sim) as c, c.map([gemini(0, "[[duration=2000]]")], deadline=150.0) as out:
        (outcome,) = await collect(out)
    assert outcome.submitted_at is not None and outcome.completed_at is not None
    waited = (outcome.completed_at - outcome.submitted_at) / 0.001
    assert 150.0 <= waited < 400.0


async def test_a_timed_out_task_keeps_its_slot_until_it_ends(sim: Simulator) -> None:
    """With max_in_flight=1 the next job waits until the timed-out task really ended."""
    jobs = [("slow", gemini(0, "[[duration=300]]")), ("next", gemini(1, "[[duration=5]]"))]
    async with client(sim) as c, c.map(jobs, deadline=50.0, max_in_flight=1) as out:
        got = {o.key: o for o in await collect(out)}
    assert isinstance(got["slow"].error, TaskTimeoutError) and got["next"].ok
    assert sim.stats.max_in_flight[sim.api_key] == 1
    assert got["next"].submitted_at is not None and got["slow"].submitted_at is not None
    assert (got["next"].submitted_at - got["slow"].submitted_at) / 0.001 >= 290.0


async def test_no_deadline_waits_for_the_end(sim: Simulator) -> None:
    """Without a deadline a long task is waited for."""
    async with client(sim) as c, c.map([gemini(0, "[[duration=400]]")]) as out:
        (outcome,) = await collect(out)
    assert outcome.ok
    await anyio.lowlevel.checkpoint()
