"""Account-wide refusals stop a batch's submits at once: a 401 (bad key) or 402 (no balance)
stops every further submit of the account, a 403 (no access to a model) those of that model.
Jobs not yet submitted end not submitted with an error of the same class, without a request;
tasks already running are still polled to their end."""

from __future__ import annotations

from pathlib import Path

import pytest
from schedhelp import EXT, client, collect, ext, gemini

import omnivid
from omnivid import Journal
from omnivid.errors import (
    AuthenticationError,
    InsufficientCreditError,
    PermissionDeniedError,
)
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_a_wrong_key_sends_one_submit_not_thirty(sim: Simulator) -> None:
    """A refused key on 30 jobs: 1 submit, 30 outcomes of class 401, 29 saying not sent."""
    sim.configure(api_keys={sim.api_key})
    events: list[omnivid.Event] = []
    jobs = [gemini(i) for i in range(30)]
    async with (
        client(sim, api_key="sk-wrong") as c,
        c.map(jobs, max_in_flight=1, on_event=events.append) as out,
    ):
        got = await collect(out)
        stats = out.statistics()
    assert sim.stats.submits == 1
    assert len(got) == 30 and not any(o.ok for o in got)
    assert all(isinstance(o.error, AuthenticationError) for o in got)
    assert all(o.error.status == 401 for o in got if isinstance(o.error, AuthenticationError))
    assert sum("not submitted: an earlier submit" in str(o.error) for o in got) == 29
    assert all(o.task is None and o.attempts == 0 and o.task_id is None for o in got)
    assert sum(e.kind == "not_submitted" for e in events) == 30
    assert stats.stopped is not None and "HTTP 401" in stats.stopped
    assert "sk-wrong" not in stats.stopped and all("sk-wrong" not in str(o.error) for o in got)


async def test_at_most_the_submits_already_on_the_wire(sim: Simulator) -> None:
    """With 16 in flight, a refused key sends at most the 16 submits already under way."""
    sim.configure(api_keys={sim.api_key})
    jobs = [gemini(i) for i in range(30)]
    async with client(sim, api_key="sk-wrong") as c, c.map(jobs, max_in_flight=16) as out:
        got = await collect(out)
    assert 1 <= sim.stats.submits <= 16
    assert len(got) == 30 and all(isinstance(o.error, AuthenticationError) for o in got)


async def test_no_balance_stops_submits_but_running_tasks_finish(sim: Simulator) -> None:
    """A 402 stops the submits; the two tasks already running are polled and complete."""
    sim.configure(budgets={sim.api_key: 2.0})
    jobs = [gemini(i, "[[duration=200]]") for i in range(10)]
    async with client(sim) as c, c.map(jobs, max_in_flight=3) as out:
        got = await collect(out)
        stats = out.statistics()
    done = [o for o in got if o.ok]
    refused = [o for o in got if isinstance(o.error, InsufficientCreditError)]
    assert len(done) == 2 and len(refused) == 8
    assert sim.stats.submits == 3 and len(sim.stats.tasks) == 2
    assert stats.stopped is not None and "HTTP 402" in stats.stopped


async def test_a_model_without_access_stops_only_that_model(sim: Simulator) -> None:
    """A 403 on Omni-Flash-Ext stops its submits (one sent); the other model's jobs run."""
    sim.configure(denied_models={sim.api_key: frozenset({EXT})})
    jobs = [ext(i) for i in range(5)] + [gemini(i) for i in range(5)]
    async with client(sim) as c, c.map(jobs, max_in_flight=1) as out:
        got = await collect(out)
        stats = out.statistics()
    denied = [o for o in got if o.request.model == EXT]
    assert all(isinstance(o.error, PermissionDeniedError) for o in denied)
    assert sum("model Omni-Flash-Ext" in str(o.error) for o in denied) == 4
    assert all(o.ok for o in got if o.request.model != EXT)
    assert sim.stats.submits == 1 + 5
    assert stats.stopped is not None and "submits of Omni-Flash-Ext" in stats.stopped


async def test_stopped_jobs_are_journaled_not_submitted(sim: Simulator, tmp_path: Path) -> None:
    """Jobs stopped by a 401 are recorded not_submitted, so a rerun with a good key runs them."""
    sim.configure(api_keys={sim.api_key})
    journal = tmp_path / "journal.sqlite"
    jobs = [(f"k{i}", gemini(i)) for i in range(5)]
    async with client(sim, api_key="sk-wrong") as c, c.map(jobs, journal=journal) as out:
        await collect(out)
    with Journal.open(journal) as j:
        assert j.counts() == {"not_submitted": 5}
    async with client(sim) as c, c.map(jobs, journal=journal) as out:
        assert all(o.ok for o in await collect(out))
