"""client.map: one outcome per request, keys, inputs, order, fields, validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from schedhelp import EXT, IMMEDIATE, FakeApi, client, collect, evo, ext, gemini

import omnivid
from omnivid.errors import ValidationError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_one_ok_outcome_per_request(sim: Simulator) -> None:
    """Every request gets exactly one outcome; keys default to the input index."""
    async with client(sim) as c, c.map([gemini(i) for i in range(20)]) as outcomes:
        got = await collect(outcomes)
    assert sorted(o.key for o in got) == list(range(20))
    assert all(o.ok and o.attempts == 1 for o in got)
    assert len(sim.stats.tasks) == 20


async def test_pairs_keep_the_callers_keys(sim: Simulator) -> None:
    """(key, request) pairs come back under the caller's keys."""
    jobs = [(f"clip-{i}", gemini(i)) for i in range(5)]
    async with client(sim) as c, c.map(jobs) as outcomes:
        got = await collect(outcomes)
    assert {o.key for o in got} == {f"clip-{i}" for i in range(5)}
    assert {o.key: o.request for o in got} == dict(jobs)


async def test_async_iterable_input(sim: Simulator) -> None:
    """An async generator of requests works as input."""

    async def source() -> AsyncIterator[omnivid.VideoRequest]:
        for i in range(6):
            await anyio.lowlevel.checkpoint()
            yield gemini(i)

    async with client(sim) as c, c.map(source()) as outcomes:
        got = await collect(outcomes)
    assert sorted(o.key for o in got) == list(range(6))


async def test_plain_async_for_without_async_with(sim: Simulator) -> None:
    """`async for outcome in client.map(...)` runs to completion under the open client."""
    async with client(sim) as c:
        got = [o async for o in c.map([gemini(i) for i in range(8)])]
    assert len(got) == 8 and all(o.ok for o in got)


async def test_outcomes_arrive_in_completion_order(sim: Simulator) -> None:
    """A short task submitted after a long one comes back first."""
    jobs = [("long", gemini(0, "[[duration=200]]")), ("short", gemini(1, "[[duration=5]]"))]
    async with client(sim) as c, c.map(jobs) as outcomes:
        keys = [o.key async for o in outcomes]
    assert keys == ["short", "long"]


async def test_outcome_fields(sim: Simulator) -> None:
    """An outcome carries the task, its id, cost, attempts, timings and the fingerprint."""
    request = ext(1)
    async with client(sim) as c, c.map([request]) as outcomes:
        (outcome,) = await collect(outcomes)
    assert outcome.ok and outcome.error is None and outcome.task is not None
    assert outcome.task_id == outcome.task.id and outcome.task_ids == (outcome.task.id,)
    assert outcome.task.model == EXT
    assert outcome.cost == pytest.approx(0.4)
    assert outcome.fingerprint == request.fingerprint()
    assert outcome.queued_at is not None and outcome.submitted_at is not None
    assert outcome.completed_at is not None
    assert outcome.queued_at <= outcome.submitted_at <= outcome.completed_at
    assert not outcome.from_journal


async def test_evolink_cost_is_in_credits(sim: Simulator) -> None:
    """EvoLink reports no currency cost, so an outcome's cost is its credits."""
    async with client(sim, "evolink") as c, c.map([evo(1)]) as outcomes:
        (outcome,) = await collect(outcomes)
    assert outcome.ok and outcome.task is not None
    assert outcome.cost == pytest.approx(outcome.task.credits or -1)


async def test_invalid_request_is_an_outcome_without_traffic(sim: Simulator) -> None:
    """A request breaking a rule comes back as a ValidationError outcome; nothing is sent."""
    bad = omnivid.VideoRequest(model=EXT, prompt="x", duration=7)
    async with client(sim) as c, c.map([bad]) as outcomes:
        (outcome,) = await collect(outcomes)
    assert isinstance(outcome.error, ValidationError) and outcome.error.field == "duration"
    assert outcome.task is None and sim.stats.submits == 0


async def test_bad_input_item_raises_after_the_others(sim: Simulator) -> None:
    """An input item that is not a request ends the input; earlier jobs still finish."""
    items: list[Any] = [gemini(0), gemini(1), "not a request"]
    got: list[omnivid.Outcome] = []
    async with client(sim) as c:
        with pytest.raises(ValidationError, match=r"requests\[2\]"):
            async with c.map(items) as outcomes:
                async for outcome in outcomes:
                    got.append(outcome)
    assert sorted(o.key for o in got) == [0, 1]


async def test_input_error_raises_after_the_jobs_taken(sim: Simulator) -> None:
    """If the input raises, the jobs already taken finish, then the error is raised."""

    def source() -> Any:
        yield gemini(0)
        yield gemini(1)
        raise RuntimeError("broken input")

    got: list[omnivid.Outcome] = []
    async with client(sim) as c:
        with pytest.raises(RuntimeError, match="broken input"):
            async for outcome in c.map(source()):
                got.append(outcome)
    assert len(got) == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_in_flight", 0), ("max_cost", -1), ("deadline", 0), ("prefetch", -2)],
)
async def test_bad_settings_raise_at_once(sim: Simulator, setting: str, value: Any) -> None:
    """Bad settings are a ValidationError naming them, before anything runs."""
    async with client(sim) as c:
        with pytest.raises(ValidationError) as info:
            c.map([gemini(0)], **{setting: value})
    assert info.value.field == setting and sim.stats.submits == 0


async def test_requests_must_be_an_iterable(sim: Simulator) -> None:
    """A single request instead of an iterable is a ValidationError."""
    async with client(sim) as c:
        with pytest.raises(ValidationError, match="requests"):
            c.map(gemini(0))  # type: ignore[arg-type]


async def test_max_in_flight_is_respected(sim: Simulator) -> None:
    """The simulator never sees more than max_in_flight tasks of the account at once."""
    async with client(sim) as c, c.map([gemini(i) for i in range(40)], max_in_flight=5) as out:
        got = await collect(out)
    assert len(got) == 40
    assert sim.stats.max_in_flight[sim.api_key] == 5


async def test_max_in_flight_can_change_while_running(sim: Simulator) -> None:
    """Raising max_in_flight during a batch lets more tasks run at once."""
    async with client(sim) as c:
        api = FakeApi(c, duration=0.01)
        async with c.map([gemini(i) for i in range(60)], max_in_flight=2) as outcomes:
            n = 0
            async for _ in outcomes:
                n += 1
                if n == 4:
                    peak_before = api.max_in_flight
                    outcomes.max_in_flight = 10
    assert peak_before <= 2 and api.max_in_flight == 10 and n == 60


async def test_a_batch_runs_once(sim: Simulator) -> None:
    """Entering a finished MapRun again is an error."""
    async with client(sim, poll=IMMEDIATE) as c:
        run = c.map([gemini(0)])
        async with run as outcomes:
            await collect(outcomes)
        with pytest.raises(RuntimeError, match="already run"):
            await run.__aenter__()


async def test_plain_iteration_needs_an_open_client(sim: Simulator) -> None:
    """Iterating a map of a closed client is a ConfigurationError."""
    c = client(sim)
    run = c.map([gemini(0)])
    with pytest.raises(omnivid.errors.ConfigurationError, match="not open"):
        run.__aiter__()
