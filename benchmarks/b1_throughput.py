"""B1 throughput: 5,000 instant jobs, omnivid ``map`` versus a minimal raw-aiohttp loop.

Both contenders run the same jobs (``gemini-omni-flash-preview``, one distinct prompt each)
against a fresh simulator with ``--instant`` (every task is complete at its first poll), at
the same concurrency (``max_in_flight`` = the raw loop's semaphore) and the same connection
pool (100). omnivid polls at once (``IMMEDIATE``) like the raw loop, so both send exactly one
submit and one poll per job; the HTTP count comes from the simulator. Each round runs both
contenders back to back (alternating which goes first); the table shows each contender's
median round, and the ratio is the median of the rounds' ratios (a round's two runs share the
machine's conditions, which other work on it changes from minute to minute)::

    jobs/s            = jobs / wall seconds
    ratio             = median over rounds of omnivid jobs/s / raw jobs/s     (target >= 0.8)
    CPU per request   = client process CPU seconds / HTTP requests seen by the simulator
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import anyio
import attrs
from attrs import define

import omnivid

from ._baselines import RawCounts, raw_throughput
from ._harness import BenchResult, SimOptions, SimProcess, Table, Target, cpu_seconds, fmt, median
from ._omnivid import omnivid_throughput

__all__ = ["MODEL", "ThroughputRun", "bodies", "requests", "run", "run_once"]

MODEL = "gemini-omni-flash-preview"
JOBS, QUICK_JOBS = 5_000, 150
CONCURRENCY = 64
ROUNDS, QUICK_ROUNDS = 7, 1


def bodies(n: int) -> Iterator[dict[str, Any]]:
    """The raw loop's jobs: APIMart submit bodies, built as the loop goes."""
    for i in range(n):
        yield {"model": MODEL, "prompt": f"benchmark job {i}"}


def requests(n: int) -> Iterator[omnivid.VideoRequest]:
    """omnivid's jobs: the same requests as ``VideoRequest`` objects, from a generator."""
    for i in range(n):
        yield omnivid.VideoRequest(model=MODEL, prompt=f"benchmark job {i}")


@define
class ThroughputRun:
    """One contender's run: jobs, outcomes, wall and CPU seconds, HTTP requests."""

    contender: str
    jobs: int
    completed: int
    failed: int
    seconds: float
    cpu: float
    requests: int
    server_cpu: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu / self.requests * 1e6 if self.requests else float("nan")

    @property
    def server_cpu_us_per_request(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else float("nan")


Runner = Callable[[str, str], Coroutine[Any, Any, RawCounts]]


def run_once(contender: str, runner: Runner, jobs: int) -> ThroughputRun:
    """Run ``runner(base_url, api_key)`` against a fresh instant simulator and time it."""
    with SimProcess(SimOptions(instant=True)) as sim:
        gc.collect()
        server0, cpu0, t0 = sim.cpu_seconds(), cpu_seconds(), time.perf_counter()
        counts = anyio.run(runner, sim.base_url("apimart"), sim.api_key)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        server_cpu = sim.cpu_seconds() - server0
        stats = sim.stats()
    return ThroughputRun(
        contender,
        jobs,
        counts.completed,
        counts.failed,
        seconds,
        cpu,
        int(stats["submits"]) + int(stats["polls"]),
        server_cpu,
    )


def raw_runner(jobs: int) -> Runner:
    """The raw-aiohttp loop over ``jobs`` bodies."""

    async def go(base_url: str, api_key: str) -> RawCounts:
        return await raw_throughput(base_url, api_key, bodies(jobs), concurrency=CONCURRENCY)

    return go


def omnivid_runner(jobs: int, journal: str | os.PathLike[str] | None = None) -> Runner:
    """omnivid ``map`` over ``jobs`` requests (with a journal at ``journal`` if given)."""

    async def go(base_url: str, api_key: str) -> RawCounts:
        return await omnivid_throughput(
            base_url, api_key, requests(jobs), max_in_flight=CONCURRENCY, journal=journal
        )

    return go


def summarize(runs: list[ThroughputRun]) -> dict[str, float]:
    """Median jobs/s, wall and CPU figures over a contender's rounds."""
    return {
        "jobs_per_s": median([r.jobs_per_s for r in runs]),
        "seconds": median([r.seconds for r in runs]),
        "cpu_s": median([r.cpu for r in runs]),
        "requests": median([r.requests for r in runs]),
        "cpu_us_per_request": median([r.cpu_us_per_request for r in runs]),
        "server_cpu_us_per_request": median([r.server_cpu_us_per_request for r in runs]),
        "completed": min(r.completed for r in runs),
        "failed": max(r.failed for r in runs),
    }


def throughput_table(summaries: dict[str, dict[str, float]], jobs: int) -> Table:
    """One row per contender."""
    table = Table(
        [
            "contender",
            "jobs",
            "completed",
            "HTTP requests",
            "wall s",
            "jobs/s",
            "client CPU µs/request",
            "simulator CPU µs/request",
        ]
    )
    for name, s in summaries.items():
        table.add(
            name,
            f"{jobs:,}",
            f"{int(s['completed']):,}",
            f"{int(s['requests']):,}",
            fmt(s["seconds"], 2),
            fmt(s["jobs_per_s"], 0),
            fmt(s["cpu_us_per_request"], 0),
            fmt(s["server_cpu_us_per_request"], 0),
        )
    return table


def run(quick: bool = False) -> BenchResult:
    """Run B1 and return its result."""
    jobs = QUICK_JOBS if quick else JOBS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    started = time.perf_counter()
    runs: dict[str, list[ThroughputRun]] = {"raw aiohttp": [], "omnivid map": []}
    for i in range(rounds):
        order = [("raw aiohttp", raw_runner(jobs)), ("omnivid map", omnivid_runner(jobs))]
        for name, runner in order if i % 2 == 0 else order[::-1]:
            runs[name].append(run_once(name, runner, jobs))
    summaries = {name: summarize(r) for name, r in runs.items()}
    ratios = [
        ours.jobs_per_s / raw.jobs_per_s
        for ours, raw in zip(runs["omnivid map"], runs["raw aiohttp"], strict=True)
    ]
    ratio = median(ratios)
    result = BenchResult(
        "b1",
        "throughput, instant jobs",
        params={"jobs": jobs, "concurrency": CONCURRENCY, "rounds": rounds, "model": MODEL},
        tables=[throughput_table(summaries, jobs)],
        targets=[Target("omnivid jobs/s >= 0.8 x raw aiohttp", f"{ratio:.2f} x", ratio >= 0.8)],
        notes=[
            f"median of {rounds} rounds (ratio: median of the rounds' ratios, "
            f"{', '.join(f'{r:.2f}' for r in ratios)}); each run against a fresh simulator "
            "process (`--instant`), same concurrency and 100 pooled connections",
            "client CPU µs/request = the client process's CPU time (user + system) / HTTP "
            "requests the simulator saw; the simulator's CPU (its own process, from /proc) is "
            "shown beside it: on 2 cores the two processes compete",
        ],
        data={
            "ratio": ratio,
            "round_ratios": ratios,
            "summary": summaries,
            "runs": {name: [attrs.asdict(x) for x in r] for name, r in runs.items()},
        },
    )
    result.seconds = time.perf_counter() - started
    return result
