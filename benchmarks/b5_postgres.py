"""B5 for PostgreSQL: the journal's cost on B1's workload, PostgreSQL next to SQLite.

The same instant jobs as B1 go through ``client.map`` three ways per round (the order rotating
from round to round): without a journal, with a SQLite journal (a new file each run) and with
a PostgreSQL journal (``journal=PostgresJournal``, a new batch each run in a database created
for the benchmark: one worker claims every job, records its intent, task id and result, and
books every request's slot in the account's shared rate state). The table shows medians::

    cost = median over rounds of 1 - (jobs/s with the journal) / (jobs/s without)

PostgreSQL runs on the same host (loopback, trust auth), so a round trip is the server's work
plus a local socket: a remote server adds its network latency to each awaited record (the
intent before a POST, the task id after it, the claim when a job is matched).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs

import omnivid

from ._baselines import RawCounts
from ._harness import BenchResult, Target, median
from .b1_throughput import (
    CONCURRENCY,
    JOBS,
    MODEL,
    QUICK_JOBS,
    QUICK_ROUNDS,
    Runner,
    ThroughputRun,
    omnivid_runner,
    requests,
    run_once,
    summarize,
    throughput_table,
)
from .b8_scale_out import ADMIN_URL, _database, _drop

__all__ = ["run"]

ROUNDS = 3
_IMMEDIATE = omnivid.PollPolicy(floor=0.0, first_fraction=0.0, min_interval=0.0, jitter=0.0)


def postgres_runner(jobs: int, url: str, batch: str, trips: list[int]) -> Runner:
    """omnivid ``map`` over ``jobs`` requests on a PostgreSQL journal (round trips noted)."""

    async def go(base_url: str, api_key: str) -> RawCounts:
        from omnivid.journal import PostgresJournal

        counts = RawCounts()
        journal = await PostgresJournal.open(url, batch=batch, preload=False, pool_size=8)
        async with (
            omnivid.AsyncClient(
                "apimart", base_url=base_url, api_key=api_key, poll=_IMMEDIATE
            ) as client,
            client.map(requests(jobs), max_in_flight=CONCURRENCY, journal=journal) as outcomes,
        ):
            async for outcome in outcomes:
                counts.completed += outcome.ok
                counts.failed += not outcome.ok
        trips.append(journal.db.round_trips)
        await journal.aclose()
        return counts

    return go


def _sqlite(jobs: int) -> ThroughputRun:
    with tempfile.TemporaryDirectory(prefix="omnivid-bench-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        return run_once("omnivid map + SQLite journal", omnivid_runner(jobs, journal=path), jobs)


def run(quick: bool = False) -> BenchResult:
    """Run B5 (PostgreSQL) and return its result."""
    started = time.perf_counter()
    jobs = QUICK_JOBS if quick else JOBS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    url = _database()
    if url is None:
        result = BenchResult(
            "b5pg", "journal cost on B1's workload: PostgreSQL next to SQLite",
            notes=[f"PostgreSQL not reachable at {ADMIN_URL}: not run"],
        )  # fmt: skip
        result.seconds = time.perf_counter() - started
        return result
    runs: dict[str, list[ThroughputRun]] = {"plain": [], "sqlite": [], "postgres": []}
    trips: list[int] = []
    try:
        for i in range(rounds):
            order = ["plain", "sqlite", "postgres"]
            for kind in order[i % 3 :] + order[: i % 3]:
                if kind == "plain":
                    runs[kind].append(run_once("omnivid map", omnivid_runner(jobs), jobs))
                elif kind == "sqlite":
                    runs[kind].append(_sqlite(jobs))
                else:
                    runner = postgres_runner(jobs, url, f"b5-{i}", trips)
                    runs[kind].append(run_once("omnivid map + PostgreSQL journal", runner, jobs))
    finally:
        _drop(url)
    summaries = {
        "omnivid map": summarize(runs["plain"]),
        "omnivid map + SQLite journal": summarize(runs["sqlite"]),
        "omnivid map + PostgreSQL journal": summarize(runs["postgres"]),
    }
    cost = {
        kind: median(
            [
                1 - j.jobs_per_s / p.jobs_per_s
                for j, p in zip(runs[kind], runs["plain"], strict=True)
            ]
        )
        for kind in ("sqlite", "postgres")
    }
    per_job = median(trips) / jobs
    result = BenchResult(
        "b5pg",
        "journal cost on B1's workload: PostgreSQL next to SQLite",
        params={"jobs": jobs, "concurrency": CONCURRENCY, "rounds": rounds, "model": MODEL},
        tables=[throughput_table(summaries, jobs)],
        targets=[
            Target(
                "SQLite journal costs <= 15% of throughput",
                f"{100 * cost['sqlite']:.1f} %",
                cost["sqlite"] <= 0.15,
            ),
            Target("PostgreSQL journal cost (reported)", f"{100 * cost['postgres']:.1f} %", True),
        ],
        notes=[
            f"median of {rounds} rounds, each run against a fresh simulator; PostgreSQL on "
            f"{ADMIN_URL.split('@')[-1].rsplit('/', 1)[0]} (same host), a new batch per run",
            f"PostgreSQL round trips per job: {per_job:.2f} (claim, intent, task id, the "
            "finished records batched, and each request's slot in the shared rate state)",
        ],
        data={
            "cost": cost,
            "round_trips_per_job": per_job,
            "summary": summaries,
            "runs": {k: [attrs.asdict(r) for r in v] for k, v in runs.items()},
        },
    )
    result.seconds = time.perf_counter() - started
    return result
