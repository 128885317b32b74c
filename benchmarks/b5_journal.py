"""B5 journal cost: B1's omnivid run with and without the SQLite journal.

The same 5,000 instant jobs as B1 go through ``client.map`` twice per round, once with
``journal=PATH`` (a new journal file in a temporary directory each run, so nothing is skipped
or resumed) and once without, back to back (alternating which goes first); the table shows
medians, the cost is the median of the rounds' costs::

    cost = median over rounds of 1 - (jobs/s with journal) / (jobs/s without)   (target <= 0.15)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs

from ._harness import BenchResult, Target, median
from .b1_throughput import (
    CONCURRENCY,
    JOBS,
    MODEL,
    QUICK_JOBS,
    QUICK_ROUNDS,
    ROUNDS,
    ThroughputRun,
    omnivid_runner,
    run_once,
    summarize,
    throughput_table,
)

__all__ = ["run"]


def filesystem(path: str) -> str:
    """The type of the filesystem holding ``path`` (from ``/proc/mounts``), e.g. ``ext4``."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and path.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def _with_journal(jobs: int) -> ThroughputRun:
    with tempfile.TemporaryDirectory(prefix="omnivid-bench-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        run = run_once("omnivid map + journal", omnivid_runner(jobs, journal=path), jobs)
        run_size = path.stat().st_size if path.exists() else 0
    run.contender = f"omnivid map + journal ({run_size / 1e6:.1f} MB)"
    return run


def run(quick: bool = False) -> BenchResult:
    """Run B5 and return its result."""
    started = time.perf_counter()
    jobs = QUICK_JOBS if quick else JOBS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    plain: list[ThroughputRun] = []
    journaled: list[ThroughputRun] = []
    for i in range(rounds):
        for journal in (False, True) if i % 2 == 0 else (True, False):
            if journal:
                journaled.append(_with_journal(jobs))
            else:
                plain.append(run_once("omnivid map", omnivid_runner(jobs), jobs))
    summaries = {
        "omnivid map": summarize(plain),
        "omnivid map + SQLite journal": summarize(journaled),
    }
    costs = [
        1 - with_journal.jobs_per_s / without.jobs_per_s
        for with_journal, without in zip(journaled, plain, strict=True)
    ]
    cost = median(costs)
    result = BenchResult(
        "b5",
        "journal cost on B1's workload",
        params={"jobs": jobs, "concurrency": CONCURRENCY, "rounds": rounds, "model": MODEL},
        tables=[throughput_table(summaries, jobs)],
        targets=[Target("journal costs <= 15% of throughput", f"{100 * cost:.1f} %", cost <= 0.15)],
        notes=[
            f"median of {rounds} rounds (costs {', '.join(f'{100 * c:.0f}%' for c in costs)}), "
            "each run against a fresh simulator; the "
            f"journal is a new file in {tempfile.gettempdir()} "
            f"({filesystem(tempfile.gettempdir())}) each run, omnivid's default durability "
            "(WAL, synchronous=NORMAL: no fsync per commit)",
            "journal sizes per run: "
            + ", ".join(r.contender.split("(")[-1].rstrip(")") for r in journaled),
        ],
        data={
            "cost": cost,
            "round_costs": costs,
            "summary": summaries,
            "runs": {
                "plain": [attrs.asdict(r) for r in plain],
                "journal": [attrs.asdict(r) for r in journaled],
            },
        },
    )
    result.seconds = time.perf_counter() - started
    return result
