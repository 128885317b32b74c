"""One batch shared by workers through ``client.map(journal=URL, batch=NAME)``: claims at match
time, held jobs waited for, leases taken over, one budget (in-process workers on the
simulator; the multi-process tests are in test_pg_workers.py)."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import anyio
import pytest
from pghelp import OpenJournal, client

import omnivid
from omnivid import VideoRequest
from omnivid.errors import (
    BudgetExceededError,
    ConfigurationError,
    DatabaseUnavailableError,
    SubmissionUnknownError,
)
from omnivid.journal._postgres import PostgresJournal
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

GEMINI = "gemini-omni-flash-preview"


def jobs(n: int, prompt: str = "job") -> list[tuple[str, VideoRequest]]:
    """``n`` keyed jobs."""
    return [(f"k{i}", VideoRequest(model=GEMINI, prompt=f"{prompt} {i}")) for i in range(n)]


async def run(
    sim: Simulator, journal: Any, n: int, *, batch: str | None = None, **options: Any
) -> tuple[dict[Any, omnivid.Outcome], omnivid.BatchStats, list[omnivid.Event]]:
    """A map of ``n`` jobs; its outcomes by key, its statistics and its events."""
    events: list[omnivid.Event] = []
    also = options.pop("on_event", None)

    def on_event(event: omnivid.Event) -> None:
        events.append(event)
        if also is not None:
            also(event)

    async with (
        client(sim) as c,
        c.map(jobs(n), journal=journal, batch=batch, on_event=on_event, **options) as out,
    ):
        found: dict[Any, omnivid.Outcome] = {}
        async for o in out:
            assert o.key not in found
            found[o.key] = o
    return found, out.statistics(), events


async def test_two_workers_share_a_batch_by_url(sim: Simulator, db_url: str, batch: str) -> None:
    """Two maps on one batch by URL: every job submitted once; each map has an outcome for
    every job, those the other ran from the journal with its worker's name."""
    results: list[dict[Any, omnivid.Outcome]] = []

    async def worker() -> None:
        outcomes, _, _ = await run(sim, db_url, 30, batch=batch, max_in_flight=4)
        results.append(outcomes)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
    assert set(sim.stats.tasks_by_fingerprint.values()) == {1} and len(sim.stats.tasks) == 30
    first, second = results
    assert set(first) == set(second) == {f"k{i}" for i in range(30)}
    assert all(o.ok and o.worker for outcomes in results for o in outcomes.values())
    for key in first:  # one ran it, the other read it from the journal: same task, same worker
        a, b = first[key], second[key]
        assert a.task_id == b.task_id and a.worker == b.worker
        assert [a.from_journal, b.from_journal].count(True) >= 1
    assert len({o.worker for o in first.values()}) == 2  # both worked


async def test_a_held_job_is_taken_over_when_its_lease_runs_out(
    sim: Simulator, open_journal: OpenJournal, db_url: str, batch: str
) -> None:
    """A dead worker held three jobs: k0 submitted (task id recorded), k1 only its intent, k2
    only claimed. A map on the batch waits for them; once their leases run out it polls k0's
    task (not resubmitted), reports k1 ambiguous (never resubmitted), submits k2."""
    dead = await open_journal(worker="dead", lease=0.3)
    reqs = dict(jobs(3))
    async with client(sim) as c:
        task = await c.submit(reqs["k0"])
    for key in ("k0", "k1", "k2"):
        assert (await dead.claim(key, reqs[key], provider="apimart")).status == "claimed"
    for key in ("k0", "k1"):
        await dead.write_intent(
            key, reqs[key], provider="apimart", fingerprint=reqs[key].fingerprint(), run="r",
            new=False,
        )  # fmt: skip
    await dead.write_submitted("k0", task, task_ids=[task.id], attempts=1)
    live = await PostgresJournal.open(db_url, batch=batch, worker="live", lease=0.3)
    outcomes, stats, events = await run(sim, live, 3)
    assert outcomes["k0"].ok and outcomes["k0"].task_id == task.id
    assert outcomes["k0"].worker == "live" and stats.resumed == 1
    assert isinstance(outcomes["k1"].error, SubmissionUnknownError)
    assert "dead" in str(outcomes["k1"].error)
    assert outcomes["k2"].ok and outcomes["k2"].worker == "live"
    assert Counter(e.kind for e in events)["held"] == 3
    assert len(sim.stats.tasks) == 2 and set(sim.stats.tasks_by_fingerprint.values()) == {1}
    assert not live.closed  # a journal passed in is left open (flushed)
    await live.aclose()


async def test_a_worker_waits_for_the_jobs_another_one_runs(
    sim: Simulator, db_url: str, batch: str
) -> None:
    """A live worker holds every job: a second map waits (no request of its own) and delivers
    each job from the journal, with the first worker's name, as it ends."""
    first = await PostgresJournal.open(db_url, batch=batch, worker="first", lease=5.0)
    second = await PostgresJournal.open(db_url, batch=batch, worker="second", lease=0.2)
    try:
        async with anyio.create_task_group() as tg:
            ran: list[tuple[dict[Any, omnivid.Outcome], omnivid.BatchStats]] = []

            async def go(journal: PostgresJournal, delay: float) -> None:
                await anyio.sleep(delay)
                outcomes, stats, _ = await run(sim, journal, 8, max_in_flight=8)
                ran.append((outcomes, stats))

            tg.start_soon(go, first, 0.0)
            tg.start_soon(go, second, 0.05)
        by_worker = {o.worker for outcomes, _ in ran for o in outcomes.values()}
        assert by_worker == {"first"}
        late = [outcomes for outcomes, stats in ran if stats.submitted == 0]
        assert late and all(o.ok and o.from_journal for o in late[0].values())
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_budget_holds_over_workers(sim: Simulator, db_url: str, batch: str) -> None:
    """max_cost=5 at an estimate of 1 per job, two workers of 6 jobs each on one batch: 5 jobs
    are submitted in all, the others end not submitted (budget) in both workers."""
    results: list[tuple[dict[Any, omnivid.Outcome], omnivid.BatchStats]] = []

    async def worker() -> None:
        outcomes, stats, _ = await run(
            sim, db_url, 6, batch=batch, max_cost=5.0, cost_estimate=1.0, max_in_flight=3
        )
        results.append((outcomes, stats))

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
    assert len(sim.stats.tasks) <= 5
    for outcomes, stats in results:
        assert len(outcomes) == 6
        refused = [o for o in outcomes.values() if isinstance(o.error, BudgetExceededError)]
        assert len(refused) + sum(o.ok for o in outcomes.values()) == 6
        assert stats.cost_spent_total <= 5.0 + 1e-9


async def test_a_batch_name_needs_a_database(sim: Simulator, tmp_path: Any) -> None:
    """batch= with a SQLite journal, or without a journal, is a clear error."""
    for journal in (tmp_path / "j.sqlite", None):
        with pytest.raises(ConfigurationError, match="batch"):
            await run(sim, journal, 1, batch="b")
    with pytest.raises(ConfigurationError, match="batch=NAME"):
        await run(sim, "postgresql://postgres@127.0.0.1/x", 1)


async def test_a_lost_lease_is_reported_and_the_job_handed_over(
    sim: Simulator, open_journal: OpenJournal, db_url: str, batch: str, sql: Any
) -> None:
    """Another worker takes a running job over (this worker's lease had run out): the next
    heartbeat finds it lost, reports it (a lease_lost event), stops working on it, and the
    batch delivers the job from the journal once the other worker finished it."""
    live = await PostgresJournal.open(db_url, batch=batch, worker="live", lease=0.4)
    thief = await open_journal(worker="thief", lease=30.0)
    request = VideoRequest(model=GEMINI, prompt="a long one [[duration=600]]")
    events: list[omnivid.Event] = []
    submitted = anyio.Event()

    def on_event(event: omnivid.Event) -> None:
        events.append(event)
        if event.kind == "submitted":
            submitted.set()

    async def steal() -> None:
        await submitted.wait()
        await live.aflush()
        sql(  # the live worker's lease runs out and another worker claims the job
            "UPDATE omnivid_jobs SET worker = 'thief', token = token + 1, "
            "lease_until = now() + interval '30 seconds' WHERE batch = %s AND key = 'k0'",
            batch,
        )
        claim = await thief.claim("k0", request, provider="apimart")
        assert claim.status == "claimed"
        task_id = claim.entry.task_id
        assert task_id is not None
        async with client(sim) as c:
            done = await c.wait(task_id)
        thief.record_finished("k0", done, cost=0.5)
        await thief.aflush()

    async with client(sim) as c, anyio.create_task_group() as tg:
        tg.start_soon(steal)
        async with c.map([("k0", request)], journal=live, on_event=on_event) as out:
            outcomes = [o async for o in out]
    (outcome,) = outcomes
    assert outcome.ok and outcome.from_journal and outcome.worker == "thief"
    assert [e.kind for e in events].count("lease_lost") == 1
    assert len(sim.stats.tasks) == 1
    await live.aclose()


async def test_a_database_gone_mid_run_stops_the_submits(
    sim: Simulator, fresh_url: str, batch: str
) -> None:
    """The database refuses every connection mid-run: the batch stops submitting (no request
    reaches the simulator after that but those already past the gate), every job still has
    its outcome, and BatchStats.stopped names the database."""
    import psycopg
    from pghelp import ADMIN_URL, as_url
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(fresh_url)["dbname"]
    journal = await PostgresJournal.open(as_url(fresh_url), batch=batch, timeout=1.0, lease=5.0)
    gone = anyio.Event()
    submits_when_gone: list[int] = []

    def on_event(event: omnivid.Event) -> None:
        if event.kind == "completed" and not gone.is_set():
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            submits_when_gone.append(sim.stats.submits)
            gone.set()

    try:
        with anyio.fail_after(20):
            outcomes, stats, _ = await run(sim, journal, 20, max_in_flight=2, on_event=on_event)
        assert len(outcomes) == 20
        assert stats.stopped is not None and "database" in stats.stopped
        assert sim.stats.submits <= submits_when_gone[0] + 2  # at most those in flight then
        stopped = [o for o in outcomes.values() if o.error is not None and not o.ok]
        assert stopped and all("database" in str(o.error) for o in stopped)
        assert len(sim.stats.tasks) == len(set(sim.stats.tasks))
    finally:
        with contextlib.suppress(DatabaseUnavailableError):  # its last records are lost
            await journal.aclose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_a_claim_answered_during_a_renewal_is_not_lost(open_journal: OpenJournal) -> None:
    """Claims made while a renewal is on the wire are not in its snapshot: none of them is
    taken for a lease lost (one worker alone never loses a lease)."""
    journal = await open_journal(pool_size=4)
    reqs = dict(jobs(40))
    await journal.claim("k0", reqs["k0"], provider="apimart")
    lost: set[str] = set()
    async with anyio.create_task_group() as tg:

        async def renew() -> None:
            for _ in range(10):
                lost.update(await journal.renew())

        tg.start_soon(renew)
        for key in list(reqs)[1:]:
            assert (await journal.claim(key, reqs[key], provider="apimart")).status == "claimed"
    assert lost == set() and journal.lost == frozenset()
