"""With a journal, ``max_cost`` caps the spend over every run of that journal: spent plus
reserved, the reservations of killed or cancelled runs included (the simulator's money ledger,
``sim.stats``, is the judge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from journalhelp import client, run
from test_journal_seam import MemoryJournal

import omnivid
from omnivid import Journal, VideoRequest
from omnivid.errors import BudgetExceededError
from omnivid.journal import Spending
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

EXT = "Omni-Flash-Ext"  # costs 0.4 (its estimate too)


def ext(i: int, marker: str = "") -> VideoRequest:
    """A distinct Omni-Flash-Ext request of 6 s."""
    return VideoRequest(model=EXT, prompt=f"clip {i} {marker}".strip(), duration=6)


def ext_jobs(n: int, marker: str = "") -> list[tuple[str, VideoRequest]]:
    """``n`` keyed Omni-Flash-Ext jobs ``k0``, ``k1``..."""
    return [(f"k{i}", ext(i, marker)) for i in range(n)]


async def _run_with_stats(
    sim: Simulator, items: Any, **options: Any
) -> tuple[dict[Any, omnivid.Outcome], omnivid.BatchStats]:
    async with client(sim) as c, c.map(items, **options) as outcomes:
        got = {o.key: o async for o in outcomes}
        return got, outcomes.statistics()


async def test_plain_reruns_never_spend_past_the_cap(sim: Simulator, journal_path: Path) -> None:
    """Three runs of 20 jobs at 0.4 with max_cost=2.0 on one journal charge 2.0 in all."""
    for attempt in range(3):
        outcomes, stats = await _run_with_stats(
            sim, ext_jobs(20), max_cost=2.0, journal=journal_path
        )
        assert sum(o.ok for o in outcomes.values()) == 5
        refused = [o for o in outcomes.values() if isinstance(o.error, BudgetExceededError)]
        assert len(refused) == 15
        assert stats.cost_spent_total == pytest.approx(2.0) and stats.max_cost == 2.0
        assert stats.cost_spent == pytest.approx(2.0 if attempt == 0 else 0.0)
        if attempt:
            assert "every run of the journal" in str(refused[0].error)
    assert len(sim.stats.tasks) == 5
    assert sim.stats.total_cost == pytest.approx(2.0)


async def test_a_higher_cap_on_the_rerun_submits_only_the_difference(
    sim: Simulator, journal_path: Path
) -> None:
    """A rerun with max_cost raised from 2.0 to 3.2 submits 3 more jobs at 0.4, not 8."""
    await run(sim, ext_jobs(20), max_cost=2.0, journal=journal_path)
    outcomes, stats = await _run_with_stats(sim, ext_jobs(20), max_cost=3.2, journal=journal_path)
    assert sum(o.ok and not o.from_journal for o in outcomes.values()) == 3
    assert stats.cost_spent_total == pytest.approx(3.2)
    assert sim.stats.total_cost == pytest.approx(3.2)


async def test_unanswered_intents_of_a_killed_run_count_as_reserved(
    sim: Simulator, journal_path: Path
) -> None:
    """Three unanswered intents (1.2) of a killed run leave room for two new jobs under 2.0."""
    with Journal.open(journal_path) as journal:
        for key, request in ext_jobs(3):
            assert journal.record_intent(key, request, provider="apimart", reserved=0.4)
        assert journal.spending("apimart") == Spending(spent=0.0, reserved=pytest.approx(1.2))
    outcomes, stats = await _run_with_stats(sim, ext_jobs(10), max_cost=2.0, journal=journal_path)
    assert sum(o.ambiguous for o in outcomes.values()) == 3
    assert sum(o.ok for o in outcomes.values()) == 2
    assert sim.stats.submits == 2 and sim.stats.total_cost == pytest.approx(0.8)
    assert stats.cost_reserved_total == pytest.approx(1.2)  # still held: possibly billed


async def test_a_resumed_job_takes_over_its_reservation(sim: Simulator, journal_path: Path) -> None:
    """Five running tasks (2.0) of a cancelled run are taken over: under 2.4, one new job runs."""
    # the first five last 2 real seconds (still running at the cancel); the others 0.2
    jobs = ext_jobs(5, "[[duration=2000]]") + ext_jobs(12)[5:]
    submitted: list[omnivid.Event] = []

    async with client(sim) as c:
        mapped = c.map(jobs[:5], journal=journal_path, max_cost=2.4, on_event=submitted.append)
        async with mapped as outcomes:
            async for _ in outcomes.events():
                if sum(e.kind == "submitted" for e in submitted) == 5:
                    outcomes.cancel()
                    break
        assert len(outcomes.abandoned) == 5
    with Journal.open(journal_path) as journal:
        assert journal.spending("apimart") == Spending(spent=0.0, reserved=pytest.approx(2.0))

    sim.advance(2000)  # the five tasks end (and are charged) before the rerun polls them
    outcomes_again, stats = await _run_with_stats(
        sim, jobs, max_cost=2.4, journal=journal_path, max_in_flight=1
    )
    resumed = [o for o in outcomes_again.values() if o.ok and o.key in {k for k, _ in jobs[:5]}]
    new = [o for o in outcomes_again.values() if o.ok and o not in resumed]
    assert len(resumed) == 5 and len(new) == 1
    assert sum(isinstance(o.error, BudgetExceededError) for o in outcomes_again.values()) == 6
    assert sim.stats.total_cost == pytest.approx(2.4)
    assert stats.cost_spent_total == pytest.approx(2.4) and stats.cost_reserved_total == 0


async def test_a_second_backend_keeps_the_cap_over_reruns(sim: Simulator) -> None:
    """The cap holds through the JournalBackend protocol alone (a dict-backed journal)."""
    journal = MemoryJournal()
    for _ in range(2):
        await run(sim, ext_jobs(10), max_cost=1.2, journal=journal)
    assert journal.spending("apimart") == Spending(spent=pytest.approx(1.2), reserved=0.0)
    assert sim.stats.total_cost == pytest.approx(1.2) and len(sim.stats.tasks) == 3


async def test_without_a_journal_the_cap_covers_one_call(sim: Simulator) -> None:
    """Without a journal each call has its own max_cost (as documented): two calls, 2 x 0.8."""
    for _ in range(2):
        await run(sim, [ext(i) for i in range(5)], max_cost=0.8)
    assert sim.stats.total_cost == pytest.approx(1.6)
