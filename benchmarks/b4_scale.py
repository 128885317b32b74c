"""B4 scale: peak memory of omnivid ``map`` over 10,000 and 100,000 instant jobs from a generator.

Each size runs in a fresh child process (``python -m benchmarks.b4_scale --child N URL KEY``)
against a fresh ``--instant`` simulator process, so neither the simulator's memory nor an
earlier run's counts. The child feeds ``map`` a generator of ``VideoRequest`` objects (never a
list), counts the outcomes without keeping them, and reports its peak RSS (``VmHWM``: since its
``exec``, not inherited from the parent as ``ru_maxrss`` is) plus its
current RSS after every tenth of the jobs (to show whether memory grows with jobs done). A
0-job child gives the floor: interpreter, imports, an open client and session::

    growth = peak RSS at 100k / peak RSS at 10k       (target <= 1.5; and <= 150 MB at 100k)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio

import omnivid

from ._harness import (
    ROOT,
    BenchResult,
    SimOptions,
    SimProcess,
    Table,
    Target,
    fmt,
    peak_rss_mb,
)
from ._omnivid import IMMEDIATE

__all__ = ["child", "run"]

MODEL = "gemini-omni-flash-preview"
CONCURRENCY = 64
SIZES, QUICK_SIZES = (0, 10_000, 100_000), (0, 200, 600)
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1e6


def requests(n: int) -> Iterator[omnivid.VideoRequest]:
    """``n`` distinct instant jobs, made one at a time."""
    for i in range(n):
        yield omnivid.VideoRequest(model=MODEL, prompt=f"benchmark job {i}")


def current_rss_mb() -> float:
    """This process's resident set size now, in MB (from ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_MB


async def _drive(base_url: str, api_key: str, jobs: int) -> dict[str, Any]:
    samples: list[float] = []
    step = max(jobs // 10, 1)
    done = ok = 0
    async with (
        omnivid.AsyncClient(
            "apimart", base_url=base_url, api_key=api_key, poll=IMMEDIATE
        ) as client,
        client.map(requests(jobs), max_in_flight=CONCURRENCY) as outcomes,
    ):
        async for outcome in outcomes:
            done += 1
            ok += outcome.ok
            if done % step == 0:
                samples.append(round(current_rss_mb(), 1))
    return {"done": done, "ok": ok, "rss_samples_mb": samples}


def child(argv: list[str]) -> None:
    """The child process: run ``argv = [jobs, base_url, api_key]`` and print JSON."""
    jobs, base_url, api_key = int(argv[0]), argv[1], argv[2]
    floor = current_rss_mb()
    t0 = time.perf_counter()
    out = anyio.run(_drive, base_url, api_key, jobs)
    out.update(
        jobs=jobs,
        seconds=time.perf_counter() - t0,
        peak_rss_mb=peak_rss_mb(),
        rss_after_imports_mb=floor,
        rss_end_mb=current_rss_mb(),
    )
    print(json.dumps(out))


def measure(jobs: int) -> dict[str, Any]:
    """Run one child against a fresh simulator; its JSON report plus the server's counts."""
    with SimProcess(SimOptions(instant=True)) as sim:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.b4_scale",
                "--child",
                str(jobs),
                sim.base_url("apimart"),
                sim.api_key,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"B4 child ({jobs} jobs) failed:\n{proc.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        stats = sim.stats()
    report["server_submits"] = int(stats["submits"])
    report["server_polls"] = int(stats["polls"])
    return report


def run(quick: bool = False) -> BenchResult:
    """Run B4 and return its result."""
    started = time.perf_counter()
    sizes = QUICK_SIZES if quick else SIZES
    reports = [measure(n) for n in sizes]
    table = Table(["jobs", "completed", "peak RSS (MB)", "RSS at end (MB)", "wall s", "jobs/s"])
    for r in reports:
        table.add(
            f"{r['jobs']:,}",
            f"{r['ok']:,}",
            fmt(r["peak_rss_mb"], 1),
            fmt(r["rss_end_mb"], 1),
            fmt(r["seconds"], 1),
            fmt(r["jobs"] / r["seconds"], 0) if r["jobs"] else "-",
        )
    mid, big = reports[1], reports[2]
    growth = big["peak_rss_mb"] / mid["peak_rss_mb"]
    result = BenchResult(
        "b4",
        "scale, instant jobs from a generator",
        params={"sizes": list(sizes), "max_in_flight": CONCURRENCY, "model": MODEL},
        tables=[table],
        targets=[
            Target(
                f"peak RSS <= 150 MB at {big['jobs']:,} jobs",
                f"{fmt(big['peak_rss_mb'], 1)} MB",
                big["peak_rss_mb"] <= 150,
            ),
            Target(
                f"growth {mid['jobs']:,} -> {big['jobs']:,} jobs <= 1.5x",
                f"{growth:.2f} x",
                growth <= 1.5,
            ),
        ],
        notes=[
            "each size in a fresh child process; peak RSS is the child's VmHWM (ru_maxrss "
            "would include the parent's peak, which Linux carries across fork/exec); the 0-job "
            "row is the floor (interpreter, imports, open client)",
            "RSS every tenth of the run ({} jobs): {}".format(
                f"{big['jobs']:,}", ", ".join(f"{x:g}" for x in big["rss_samples_mb"])
            ),
        ],
        data={"runs": reports, "growth": growth},
    )
    result.seconds = time.perf_counter() - started
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        print(run(quick="--quick" in sys.argv).markdown())
