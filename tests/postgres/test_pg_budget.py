"""PostgreSQL journal: one budget per batch over every worker, by atomic reservation."""

from __future__ import annotations

import anyio
import pytest
from pghelp import OpenJournal

from omnivid import VideoRequest
from omnivid.journal import Spending
from omnivid.journal._postgres import PostgresJournal

pytestmark = pytest.mark.anyio


def totals(spending: Spending) -> tuple[float, float]:
    """Spent and reserved, rounded past float noise."""
    return round(spending.spent, 9), round(spending.reserved, 9)


async def test_concurrent_reservers_never_pass_the_cap(open_journal: OpenJournal) -> None:
    """Three workers, 60 coroutines, 0.3 each against a cap of 10: exactly 33 succeed and the
    reserved total never passes the cap."""
    workers = [await open_journal(pool_size=4) for _ in range(3)]
    granted: list[bool] = []

    async def reserve(journal: PostgresJournal) -> None:
        granted.append(await journal.reserve(0.3, 10.0))

    async with anyio.create_task_group() as tg:
        for n in range(60):
            tg.start_soon(reserve, workers[n % 3])
    assert granted.count(True) == 33
    totals = await workers[0].budget()
    assert totals.spent == 0 and totals.reserved == pytest.approx(9.9)


async def test_settle_and_release_move_the_totals(open_journal: OpenJournal) -> None:
    """settle turns a reservation into spending; release gives it back; the room they free
    is reservable again; no cap: always granted."""
    journal = await open_journal()
    assert await journal.reserve(4.0, 5.0) and not await journal.reserve(2.0, 5.0)
    assert totals(await journal.settle(4.0, 3.5)) == (3.5, 0.0)
    assert await journal.reserve(1.5, 5.0) and not await journal.reserve(0.1, 5.0)
    assert totals(await journal.release(1.5)) == (3.5, 0.0)
    assert totals(await journal.adjust(0.0, 0.0)) == (3.5, 0.0)
    assert await journal.reserve(100.0, None)
    assert totals(await journal.budget()) == (3.5, 100.0)


async def test_a_dead_workers_reservation_is_settled_by_whoever_resumes_the_job(
    open_journal: OpenJournal, expire: object
) -> None:
    """A reserves for its job, records the task id and dies: the reservation stays counted,
    for every worker, until B (resuming the job) settles it with the job's own figure;
    settling the job again corrects the cost instead of adding it twice."""
    request = VideoRequest(model="Omni-Flash-Ext", prompt="a fox", duration=6)
    a = await open_journal()
    await a.claim("k", request, provider="apimart")
    assert await a.reserve(2.0, 5.0, key="k")
    assert totals(await a.adjust(2.0, 1.5, key="k")) == (0.0, 1.5)
    await a.aclose()  # A dies

    b = await open_journal()
    assert totals(await b.budget()) == (0.0, 1.5)
    assert not await b.reserve(3.6, 5.0)  # A's reservation still counts
    expire("k")  # type: ignore[operator]
    claim = await b.claim("k", request, provider="apimart")
    assert claim.status == "claimed" and claim.row.held == 1.5
    assert totals(await b.settle(0.0, 1.2, key="k")) == (1.2, 0.0)
    assert totals(await b.settle(0.0, 1.4, key="k")) == (1.4, 0.0)
    row = (await b.fetch(["k"]))["k"]
    assert (row.held, row.charged) == (0.0, 1.4)
    assert totals(await b.release(0.0, key="k")) == (1.4, 0.0)


async def test_a_keyed_release_gives_the_jobs_reservation_back(open_journal: OpenJournal) -> None:
    """release(key=) frees what the job reserved, whatever amount the caller passes."""
    journal = await open_journal()
    await journal.add_jobs(
        [("k", VideoRequest(model="Omni-Flash-Ext", prompt="x"))], provider="apimart"
    )
    assert await journal.reserve(0.7, 1.0, key="k")
    assert totals(await journal.release(123.0, key="k")) == (0.0, 0.0)
