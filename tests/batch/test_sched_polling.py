"""Polling: one poller with a schedule of due times, few polls per task, prompt results, nudges."""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest
from schedhelp import EXT, client, collect, ext, gemini

import omnivid
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

SCALE = 0.004


@pytest.mark.parametrize("sim_options", [{"time_scale": SCALE, "estimate_error": 0.3, "seed": 11}])
async def test_few_polls_and_a_short_delay(sim: Simulator) -> None:
    """40-240 s tasks with estimates off by up to 30%: <= 3 polls per task, and the result
    arrives within a few percent of the task's duration after it ended."""
    durations = [40 + 200 * i / 29 for i in range(30)]
    random.Random(3).shuffle(durations)
    jobs = [
        (i, omnivid.VideoRequest(model=EXT, prompt=f"job {i} [[duration={d:.1f}]]"))
        for i, d in enumerate(durations)
    ]
    async with client(sim, time_scale=SCALE) as c, c.map(jobs, max_in_flight=30) as out:
        got = await collect(out)
        stats = out.statistics()
    assert all(o.ok for o in got)
    shares = sorted(
        ((o.completed_at - o.submitted_at) / SCALE - durations[o.key]) / durations[o.key]
        for o in got
        if o.completed_at is not None and o.submitted_at is not None
    )
    shown = f"polls/task {stats.polls_per_task:.2f}, delays {[round(x, 3) for x in shares]}"
    assert stats.polls_per_task <= 3.0, shown
    assert shares[len(shares) // 2] <= 0.05 and shares[-1] <= 0.15, shown


async def test_one_poller_for_all_tasks(sim: Simulator) -> None:
    """Waiting tasks sleep in one schedule: a single poller task, no sleeper per task."""
    all_submitted = anyio.Event()

    def on_event(event: omnivid.Event) -> None:
        if event.kind == "submitted" and event.key == 39:
            all_submitted.set()

    jobs = [gemini(i, "[[duration=200]]") for i in range(40)]
    async with client(sim) as c, c.map(jobs, max_in_flight=40, on_event=on_event) as out:
        with anyio.fail_after(2):
            await all_submitted.wait()
        await anyio.sleep(0.01)  # all 40 are now waiting for their first poll
        names = [t.get_name() for t in asyncio.all_tasks()]
        workers = out._engine._workers
        assert workers is not None
        parked = len(workers._parked)
        await collect(out)
    assert sum("Schedule.run" in n for n in names) == 1
    ours = [n for n in names if "omnivid.batch." in n]
    idle = [n for n in ours if "Workers._worker" in n]
    assert len(ours) - len(idle) == 2  # the engine and the poller; no sleeper per task
    assert parked == len(idle)  # every worker is idle, waiting for work, not for a task


async def test_nudge_polls_at_once(sim: Simulator) -> None:
    """client.nudge(task_id) (a callback arrived) makes the batch poll that task now."""
    submitted: list[str] = []
    seen = anyio.Event()

    def on_event(event: omnivid.Event) -> None:
        if event.kind == "submitted" and event.task_id:
            submitted.append(event.task_id)
            seen.set()

    # the estimate (600 s) puts the first poll 30 s out; the task ends after 5 s
    async with client(sim) as c, c.map([ext(0, "[[duration=5]]")], on_event=on_event) as out:
        with anyio.fail_after(2):
            await seen.wait()
            await sim.wait_idle()  # the task has ended at the provider
        assert sim.task_status(submitted[0]) == "completed"
        assert c.nudge(submitted[0])
        (outcome,) = await collect(out)
    assert outcome.ok and outcome.completed_at is not None and outcome.submitted_at is not None
    assert (outcome.completed_at - outcome.submitted_at) / 0.001 < 25.0


async def test_nudge_of_an_unknown_task_is_false(sim: Simulator) -> None:
    """Nudging a task nobody waits for returns False."""
    async with client(sim) as c, c.map([gemini(0)]) as out:
        assert not c.nudge("task_unknown")
        await collect(out)
