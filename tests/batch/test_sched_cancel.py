"""Early exit and cancellation: submitting and polling stop, no stray tasks, ids reported."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from schedhelp import client, gemini

import omnivid
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

LONG = "[[duration=300]]"


def _omnivid_tasks() -> list[str]:
    """Names of running asyncio tasks started by omnivid's batch code."""
    return [
        t.get_name()
        for t in asyncio.all_tasks()
        if "omnivid.batch._engine" in t.get_name() or "omnivid.batch._handles" in t.get_name()
    ]


def _running(sim: Simulator, ids: dict[object, str | None]) -> bool:
    states = [sim.task_status(t) if t is not None else None for t in ids.values()]
    return all(state in ("pending", "processing") for state in states)


async def _quiet(sim: Simulator) -> bool:
    """True when no request reaches the simulator for a while (20 ms real)."""
    before = len(sim.request_log)
    await anyio.sleep(0.02)
    return len(sim.request_log) == before


async def test_leaving_the_block_cancels_the_rest(sim: Simulator) -> None:
    """Breaking out of `async with map` stops all traffic and reports the running task ids."""
    jobs = [gemini(0, "[[duration=5]]")] + [gemini(i, LONG) for i in range(1, 30)]
    async with client(sim) as c:
        async with c.map(jobs, max_in_flight=6) as outcomes:
            first = await anext(outcomes)
            assert _omnivid_tasks()  # the batch's workers and poller are running
        assert _omnivid_tasks() == []  # and now they are all gone
        assert first.ok and outcomes.done
        # every task created except the finished one is reported, and still running
        assert set(outcomes.abandoned.values()) == set(sim.stats.tasks) - {first.task_id}
        assert 5 <= len(outcomes.abandoned) <= 6 and _running(sim, outcomes.abandoned)
        assert await _quiet(sim)


async def test_breaking_a_plain_loop_cancels_the_batch(sim: Simulator) -> None:
    """Dropping the iterator of a plain `async for` cancels the batch under the client."""
    jobs = [gemini(0, "[[duration=5]]")] + [gemini(i, LONG) for i in range(1, 30)]
    async with client(sim) as c:
        run = c.map(jobs, max_in_flight=4)
        async for _ in run:
            break
        with anyio.fail_after(1):
            await run.wait_done()
        assert 3 <= len(run.abandoned) <= 4 and _running(sim, run.abandoned)
        assert len(run.abandoned) == len(sim.stats.tasks) - 1
        assert await _quiet(sim)


async def test_an_enclosing_cancel_scope_cancels_the_batch(sim: Simulator) -> None:
    """A timeout around the whole loop cancels it cleanly."""
    async with client(sim) as c:
        with anyio.move_on_after(0.05):
            async with c.map([gemini(i, LONG) for i in range(10)], max_in_flight=3) as out:
                async for _ in out:
                    pass
        assert out.done and len(out.abandoned) == 3 and _running(sim, out.abandoned)
        assert await _quiet(sim)


async def test_a_submit_on_the_wire_finishes_and_its_id_is_kept(sim: Simulator) -> None:
    """Cancelling while a POST awaits its answer still records the created task's id."""
    async with client(sim) as c:
        with anyio.move_on_after(0.03):
            async with c.map([("slow", gemini(0, "[[fault:slow=0.15@submit]] " + LONG))]) as out:
                async for _ in out:
                    pass
    assert out.abandoned.get("slow") in sim.stats.tasks and len(sim.stats.tasks) == 1


async def test_closing_the_client_cancels_a_plain_loop_left_behind(sim: Simulator) -> None:
    """A plain iteration still referenced when the client closes is cancelled with it."""
    async with client(sim) as c:
        run = c.map([gemini(i, LONG) for i in range(5)], max_in_flight=2)
        iterator = aiter(run)
        await anext(iterator)  # never finishes: the tasks are long
    assert run.done and len(run.abandoned) == 2
    del iterator


async def test_abandoned_events_name_the_running_tasks(sim: Simulator) -> None:
    """Cancellation emits one abandoned event per running task."""
    events: list[omnivid.Event] = []
    async with client(sim) as c:
        with anyio.move_on_after(0.05):
            async with c.map(
                [gemini(i, LONG) for i in range(4)], max_in_flight=2, on_event=events.append
            ) as out:
                async for _ in out:
                    pass
    abandoned = {e.task_id for e in events if e.kind == "abandoned"}
    assert abandoned == set(out.abandoned.values()) and len(abandoned) == 2
