"""Ambiguous submits: never resubmitted silently, reported with the request fingerprint."""

from __future__ import annotations

import pytest
from schedhelp import client, collect, gemini

import omnivid
from omnivid.errors import SubmissionUnknownError
from omnivid.testing import Simulator, fingerprint

pytestmark = pytest.mark.anyio

LOST = "[[fault:lost-response]]"


async def test_lost_response_is_an_outcome_not_a_resubmit(sim: Simulator) -> None:
    """A submit whose answer is lost comes back ambiguous with the fingerprint; sent once."""
    request = gemini(0, LOST)
    async with client(sim) as c, c.map([request]) as out:
        (outcome,) = await collect(out)
    assert isinstance(outcome.error, SubmissionUnknownError) and outcome.ambiguous
    assert outcome.error.fingerprint == request.fingerprint() == outcome.fingerprint
    assert outcome.task is None and outcome.attempts == 0
    assert list(sim.stats.tasks_by_fingerprint.values()) == [1]


async def test_resubmit_ambiguous_sends_it_again(sim: Simulator) -> None:
    """With resubmit_ambiguous=True the job is sent again (and may be paid twice)."""
    request = gemini(0, LOST)
    async with client(sim) as c, c.map([request], resubmit_ambiguous=True) as out:
        (outcome,) = await collect(out)
    body_fp = fingerprint(c.build_body(request))
    assert outcome.ok and sim.stats.tasks_by_fingerprint[body_fp] == 2


async def test_ambiguous_event(sim: Simulator) -> None:
    """An ambiguous submit emits an `ambiguous` terminal event with the fingerprint."""
    events: list[omnivid.Event] = []
    async with client(sim) as c, c.map([gemini(0, LOST)], on_event=events.append) as out:
        await collect(out)
    (event,) = [e for e in events if e.terminal]
    assert (
        event.kind == "ambiguous" and event.detail["fingerprint"] == gemini(0, LOST).fingerprint()
    )


async def test_ambiguous_submit_keeps_its_slot_a_while(sim: Simulator) -> None:
    """The provider may be running an ambiguous task: its slot stays taken (ambiguous_hold)."""
    jobs = [("lost", gemini(0, LOST + " [[duration=50]]")), ("next", gemini(1))]
    async with client(sim) as c, c.map(jobs, max_in_flight=1) as out:
        got = {o.key: o for o in await collect(out)}
    assert got["lost"].ambiguous and got["next"].ok
    assert got["next"].submitted_at is not None and got["lost"].completed_at is not None
    held = (got["next"].submitted_at - got["lost"].completed_at) / 0.001
    assert held >= 50.0  # gemini's typical 60 s (minus the next submit's round trip)
    assert sim.stats.max_in_flight[sim.api_key] == 1
