"""Events (callback and async iterator) and statistics."""

from __future__ import annotations

import itertools
from collections import Counter

import anyio
import pytest
from schedhelp import client, collect, gemini

import omnivid
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_one_terminal_event_per_job(sim: Simulator) -> None:
    """Every job gets exactly one terminal event, matching its outcome."""
    events: list[omnivid.Event] = []
    jobs = [gemini(0), gemini(1, "[[fail:moderation]]"), gemini(2)]
    async with client(sim) as c, c.map(jobs, on_event=events.append) as out:
        got = await collect(out)
    terminal = Counter(e.key for e in events if e.terminal)
    assert terminal == {0: 1, 1: 1, 2: 1}
    kinds = {e.key: e.kind for e in events if e.terminal}
    assert kinds == {0: "completed", 1: "failed", 2: "completed"}
    assert {o.key for o in got if o.ok} == {0, 2}


async def test_submitted_and_progress_events_carry_the_task_id(sim: Simulator) -> None:
    """A job emits submitted, then progress events, all naming its task."""
    events: list[omnivid.Event] = []
    async with client(sim) as c, c.map([gemini(0)], on_event=events.append) as out:
        (outcome,) = await collect(out)
    kinds = [e.kind for e in events]
    assert kinds[0] == "submitted" and kinds[-1] == "completed" and "progress" in kinds
    assert {e.task_id for e in events} == {outcome.task_id}
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))


async def test_rate_limited_event(sim: Simulator) -> None:
    """A 429 emits a rate_limited event with the pause and the server's Retry-After."""
    events: list[omnivid.Event] = []
    async with (
        client(sim) as c,
        c.map([gemini(0, "[[fault:429@submit]]")], on_event=events.append) as out,
    ):
        (outcome,) = await collect(out)
    (limited,) = [e for e in events if e.kind == "rate_limited"]
    assert limited.key is None and limited.detail["retry_after"] == pytest.approx(0.05)
    assert limited.detail["pause"] == pytest.approx(0.05) and outcome.ok


async def test_events_async_iterator_sees_the_same_events(sim: Simulator) -> None:
    """batch.events() yields the events on_event receives, and ends with the batch."""
    seen: list[omnivid.Event] = []
    streamed: list[omnivid.Event] = []
    async with client(sim) as c, c.map([gemini(i) for i in range(3)], on_event=seen.append) as out:
        events = out.events()

        async def drain() -> None:
            async for event in events:
                streamed.append(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await collect(out)
    assert streamed == seen and len(seen) >= 9


async def test_an_events_loop_left_early_does_not_break_the_batch(sim: Simulator) -> None:
    """An events() loop left early leaves the batch and its other listeners running."""
    seen: list[omnivid.Event] = []
    all_submitted = anyio.Event()

    def on_event(event: omnivid.Event) -> None:
        seen.append(event)
        if sum(e.kind == "submitted" for e in seen) == 3:
            all_submitted.set()

    jobs = [gemini(i, "[[duration=5000]]") for i in range(3)]
    async with client(sim) as c:
        async with c.map(jobs, on_event=on_event) as out:
            async for event in out.events():
                if event.kind == "submitted":
                    break  # the iterator is dropped here
            with anyio.fail_after(5):
                await all_submitted.wait()
            out.cancel()
            assert await collect(out) == []
        assert len(out.abandoned) == 3
    assert sum(e.kind == "abandoned" for e in seen) == 3


async def test_a_failing_handler_does_not_stop_the_batch(sim: Simulator) -> None:
    """An on_event handler that raises is logged once; the batch goes on."""

    def broken(event: omnivid.Event) -> None:
        raise RuntimeError("display crashed")

    async with client(sim) as c, c.map([gemini(i) for i in range(3)], on_event=broken) as out:
        got = await collect(out)
    assert all(o.ok for o in got)


async def test_statistics(sim: Simulator) -> None:
    """statistics() counts jobs, HTTP requests, polls per task, 429s, retries and cost."""
    jobs = [gemini(i) for i in range(4)] + [gemini(9, "[[fault:429@submit]]")]
    async with client(sim) as c, c.map(jobs) as out:
        await collect(out)
        stats = out.statistics()
    assert (stats.jobs, stats.submitted, stats.completed, stats.failed) == (5, 5, 5, 0)
    assert stats.submits == sim.stats.submits == 6 and stats.polls == sim.stats.polls
    assert stats.requests == stats.submits + stats.polls
    assert stats.polls_per_task == pytest.approx(stats.polls / 5)
    assert stats.rate_limited == 1 and stats.retries >= 1
    assert stats.cost_spent == pytest.approx(5.0) and stats.in_flight == 0
    assert stats.as_dict()["cost_spent"] == pytest.approx(5.0)
