"""PostgreSQL journal under real batches (``client.map``) on the simulator: an opened
``PostgresJournal`` passed as ``journal=`` (the batch claims each job; see also
test_pg_shared_batch.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pghelp import OpenJournal, client

import omnivid
from omnivid import VideoRequest
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

GEMINI = "gemini-omni-flash-preview"


def jobs(n: int) -> list[tuple[str, VideoRequest]]:
    """``n`` keyed jobs."""
    return [(f"k{i}", VideoRequest(model=GEMINI, prompt=f"job {i}")) for i in range(n)]


async def run(sim: Simulator, journal: Any, n: int) -> dict[Any, omnivid.Outcome]:
    """A map of ``n`` jobs on ``journal``; its outcomes by key, the journal's records
    committed."""
    async with client(sim) as c, c.map(jobs(n), journal=journal) as outcomes:
        found = {o.key: o async for o in outcomes}
    await journal.aflush()
    return found


async def test_a_batch_runs_and_resumes_on_postgres(
    sim: Simulator, open_journal: OpenJournal
) -> None:
    """A map records every job; a second worker's map on the same batch takes every outcome
    from the journal (no request sent) and reads the tasks back."""
    first = await run(sim, await open_journal(), 12)
    assert all(o.ok for o in first.values()) and len(first) == 12
    journal = await open_journal()
    assert len(journal.keys()) == 12
    entries = [e async for e in journal.results()]
    assert {e.state for e in entries} == {"completed"} and all(e.to_task() for e in entries)
    assert await journal.counts() == {"completed": 12}
    submitted = len(sim.stats.tasks)
    again = await run(sim, journal, 12)
    assert len(sim.stats.tasks) == submitted
    assert {k: o.task.id for k, o in again.items() if o.task} == {
        k: o.task.id for k, o in first.items() if o.task
    }


async def test_two_workers_on_one_batch_never_submit_a_job_twice(
    sim: Simulator, open_journal: OpenJournal
) -> None:
    """Two workers run the same 30 jobs at once on one batch: each job is submitted once
    (the simulator's fingerprint ledger); each worker has an outcome for every job: its own,
    or the other worker's read from the journal once it ended."""
    a, b = await open_journal(), await open_journal()
    results: list[dict[Any, omnivid.Outcome]] = []

    async def worker(journal: Any) -> None:
        results.append(await run(sim, journal, 30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, a)
        tg.start_soon(worker, b)
    assert set(sim.stats.tasks_by_fingerprint.values()) == {1}
    assert len(sim.stats.tasks) == 30
    for outcomes in results:
        assert len(outcomes) == 30
        assert all(o.ok for o in outcomes.values())
    ran = {k for outcomes in results for k, o in outcomes.items() if o.ok}
    assert ran == {f"k{i}" for i in range(30)}
    assert await a.counts() == {"completed": 30}


async def test_the_same_journal_reads_its_own_writes(
    sim: Simulator, open_journal: OpenJournal
) -> None:
    """A second map on the same journal object (no refresh) finds what the first recorded,
    lazy records included: every outcome from the journal, nothing sent."""
    journal = await open_journal()
    await run(sim, journal, 5)
    assert {journal.get(f"k{i}").state for i in range(5)} == {"completed"}  # type: ignore[union-attr]
    sent = (sim.stats.submits, sim.stats.polls)
    again = await run(sim, journal, 5)
    assert all(o.ok for o in again.values()) and (sim.stats.submits, sim.stats.polls) == sent
