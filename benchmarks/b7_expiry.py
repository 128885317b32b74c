"""B7: no paid result lost to URL expiry: a batch whose result URLs live 5 real seconds while the
batch runs for over a minute.

The simulator runs 1000x faster than real time (``--time-scale 0.001``: tasks take 30-50 ms)
with ``--url-ttl 5000``: a result URL expires 5 real seconds after its task completes. Each
contender runs in a fresh child process against a fresh simulator:

* **omnivid batch**: the command line's own code (``run_batch``, ``--max-in-flight 256``), its
  download queue sampled every half second (waiting, running, at once, submits held);
* **map + 4 downloads**: what the command line did before: ``client.map`` with the same
  in-flight limit, each completed job's download started in a task of its own behind a limit
  of 4 at once, first come first served (the backlog is the tasks waiting for the limit).

Expired results are counted from what each saved: the CLI's ``expired`` rows, the other's
:class:`~omnivid.errors.DownloadExpiredError` (the simulator answers 403 ``url_expired``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from ._harness import ROOT, BenchResult, SimProcess, Table, Target, fmt
from .b4_cli import MAX_IN_FLIGHT, TIME_SCALE, CliSimOptions, write_jobs

__all__ = ["child", "measure", "run"]

URL_TTL = 5000.0  # simulated seconds: 5 real seconds at TIME_SCALE
JOBS, QUICK_JOBS = 20_000, 400
NAIVE_DOWNLOADS = 4
CONTENDERS = ("omnivid batch", "map + 4 downloads")
_SAMPLE_EVERY = 0.5


async def _cli(jobs: Path, out: Path, base_url: str) -> dict[str, Any]:
    """``omnivid batch`` in this process, its download queue sampled."""
    from omnivid.cli._batch import run_batch
    from omnivid.cli._batch_run import BatchCommand, BatchRun

    command = BatchCommand(
        jobs=jobs,
        out=out,
        max_in_flight=MAX_IN_FLIGHT,
        base_urls=(base_url,),
        time_scale=TIME_SCALE,
        progress="quiet",
    )
    runs: list[BatchRun] = []
    samples: list[tuple[float, int, int, int, bool]] = []
    started = time.monotonic()

    async def sample() -> None:
        while True:
            if runs:
                q = runs[0].downloads
                at = round(time.monotonic() - started, 1)
                samples.append((at, q.waiting, q.running, q.target, q.full))
            await anyio.sleep(_SAMPLE_EVERY)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        code = await run_batch(command, observe=runs.append)
        tg.cancel_scope.cancel()
    queue = runs[0].downloads
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    statuses = Counter(str(row["status"]) for row in rows)
    return {
        "exit": code,
        "jobs": len(rows),
        "saved": sum(1 for row in rows if row["ok"]),
        "expired": statuses.get("expired", 0),
        "failed": len(rows) - sum(1 for row in rows if row["ok"]) - statuses.get("expired", 0),
        "peak_backlog": queue.peak,
        "peak_at_once": queue.peak_target,
        "held": queue.held,
        "samples": samples,
    }


async def _naive(jobs: Path, out: Path, base_url: str, api_key: str) -> dict[str, Any]:
    """``client.map`` and a download task per completed job, 4 at once."""
    import omnivid
    from omnivid.errors import DownloadError, DownloadExpiredError

    counts: Counter[str] = Counter()
    waiting = [0]
    samples: list[tuple[float, int, int, int, bool]] = []
    started = time.monotonic()
    limit = anyio.CapacityLimiter(NAIVE_DOWNLOADS)
    lines = [json.loads(line) for line in jobs.read_text().splitlines()]
    requests = (
        (str(i), omnivid.VideoRequest(model=d["model"], prompt=d["prompt"]))
        for i, d in enumerate(lines, start=1)
    )

    async def save(client: omnivid.AsyncClient, task: omnivid.Task) -> None:
        waiting[0] += 1
        async with limit:
            waiting[0] -= 1
            try:
                await client.download(task, out, overwrite=True)
                counts["saved"] += 1
            except DownloadExpiredError:
                counts["expired"] += 1
            except DownloadError:
                counts["failed"] += 1

    async def sample() -> None:
        while True:
            at = round(time.monotonic() - started, 1)
            running = int(limit.borrowed_tokens)
            samples.append((at, waiting[0], running, NAIVE_DOWNLOADS, False))
            await anyio.sleep(_SAMPLE_EVERY)

    async with (
        omnivid.AsyncClient(
            "apimart", base_url=base_url, api_key=api_key, time_scale=TIME_SCALE
        ) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(sample)
        async with (
            anyio.create_task_group() as downloads,
            client.map(requests, max_in_flight=MAX_IN_FLIGHT) as outcomes,
        ):
            async for outcome in outcomes:
                counts["jobs"] += 1
                if outcome.ok and outcome.task is not None:
                    downloads.start_soon(save, client, outcome.task)
                else:
                    counts["failed"] += 1
        tg.cancel_scope.cancel()
    peak = max((s[1] + s[2] for s in samples), default=0)
    return {
        "exit": 0,
        "jobs": counts["jobs"],
        "saved": counts["saved"],
        "expired": counts["expired"],
        "failed": counts["failed"],
        "peak_backlog": peak,
        "peak_at_once": NAIVE_DOWNLOADS,
        "held": 0,
        "samples": samples,
    }


def child(argv: list[str]) -> None:
    """The child process: ``argv = [cli|naive, REPORT, BASE_URL, API_KEY, JOBS, OUT]``."""
    mode, report, base_url, api_key, jobs, out = argv[:6]
    started = time.perf_counter()
    if mode == "cli":
        os.environ["APIMART_API_KEY"] = api_key
        result = anyio.run(_cli, Path(jobs), Path(out), base_url)
    else:
        result = anyio.run(_naive, Path(jobs), Path(out), base_url, api_key)
    result["seconds"] = time.perf_counter() - started
    Path(report).write_text(json.dumps(result))


def measure(mode: str, jobs: int) -> dict[str, Any]:
    """Run one contender (``cli`` or ``naive``) over ``jobs`` jobs in a child process."""
    options = CliSimOptions(time_scale=TIME_SCALE, url_ttl=URL_TTL)
    with tempfile.TemporaryDirectory(prefix="omnivid-b7-") as tmp, SimProcess(options) as sim:
        folder = Path(tmp)
        path = write_jobs(folder / "jobs.jsonl", jobs)
        report = folder / "report.json"
        args = [mode, str(report), sim.base_url("apimart"), sim.api_key, str(path)]
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.b7_expiry", "--child", *args, str(folder / "out")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if not report.exists():
            raise RuntimeError(f"B7 child ({mode}) failed:\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(report.read_text())
        stats = sim.stats()
    result["server_downloads"] = int(stats["downloads"])
    result["server_submits"] = int(stats["submits"])
    return result


def _over_time(samples: list[list[Any]], points: int = 12) -> str:
    """``t s: waiting+running (at once)`` at about ``points`` moments of a run."""
    step = max(len(samples) // points, 1)
    shown = samples[::step]
    if samples and shown[-1] != samples[-1]:
        shown.append(samples[-1])
    return ", ".join(
        f"{at:g} s: {w}+{r} ({n}{', held' if held else ''})" for at, w, r, n, held in shown
    )


def run(quick: bool = False) -> BenchResult:
    """Run B7 and return its result."""
    started = time.perf_counter()
    jobs = QUICK_JOBS if quick else JOBS
    results = {"omnivid batch": measure("cli", jobs), "map + 4 downloads": measure("naive", jobs)}
    table = Table(
        [
            "contender", "jobs", "saved", "expired", "other failures", "wall s",
            "peak backlog", "downloads at once", "times submits held",
        ]
    )  # fmt: skip
    for name, r in results.items():
        table.add(
            name,
            f"{r['jobs']:,}",
            f"{r['saved']:,}",
            f"{r['expired']:,}",
            f"{r['failed']:,}",
            fmt(r["seconds"], 1),
            f"{r['peak_backlog']:,}",
            str(r["peak_at_once"]) if name == "map + 4 downloads" else f"4-{r['peak_at_once']}",
            f"{r['held']:,}" if name == "omnivid batch" else "-",
        )
    cli = results["omnivid batch"]
    lifetime = URL_TTL * TIME_SCALE
    result = BenchResult(
        "b7",
        f"result URLs living {lifetime:g} s in a batch of {jobs:,} jobs",
        params={
            "jobs": jobs,
            "url_ttl_s": lifetime,
            "time_scale": TIME_SCALE,
            "max_in_flight": MAX_IN_FLIGHT,
            "model": "gemini-omni-flash-preview",
        },
        tables=[table],
        targets=[
            Target(
                f"omnivid batch: 0 results expired (URLs live {lifetime:g} s, the batch "
                f"{cli['seconds']:.0f} s)",
                f"{cli['expired']:,} expired, {cli['saved']:,} of {cli['jobs']:,} saved",
                cli["expired"] == 0 and cli["saved"] == cli["jobs"] == jobs,
            )
        ],
        notes=[
            "download backlog over time, omnivid batch (seconds: waiting+running (at once, "
            f"held = no job taken)): {_over_time(cli['samples'])}",
            "download backlog over time, map + 4 downloads (waiting+running): "
            + _over_time(results["map + 4 downloads"]["samples"]),
            "each contender in a fresh child process against a fresh simulator "
            f"(`omnivid sim --time-scale {TIME_SCALE} --url-ttl {URL_TTL:g}`); a URL expires "
            f"{lifetime:g} real seconds after its task completes",
        ],
        data={"runs": results},
    )
    result.seconds = time.perf_counter() - started
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        print(run(quick="--quick" in sys.argv).markdown())
