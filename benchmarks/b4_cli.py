"""B4-cli: peak memory of ``omnivid batch`` (the command line) over 10,000 and 100,000 lines.

B4's method applied to the command line, over a batch file whose lines each have a key. Each
size runs in a fresh child process (``python -m benchmarks.b4_cli --child REPORT -- batch
...``: ``omnivid.cli.main`` in that process, so the process measured is the CLI and nothing
else) against a fresh simulator in its own process, started as ``omnivid sim --time-scale
0.001`` would be (tasks take 30-50 simulated seconds, so 30-50 ms; result URLs live 86,400
simulated seconds, so 86 s). The CLI runs ``--max-in-flight 256 --time-scale 0.001 --progress
quiet`` with its journal, downloads and results.jsonl, as a user would. The child reports its
peak RSS (``VmHWM``) when the command returns; the parent samples its RSS (``VmRSS``) every
half second. Afterwards results.jsonl is read back: it must hold exactly one row per line. A
0-line file gives the floor::

    growth = peak RSS at 100k lines / peak RSS at 10k lines     (target <= 1.3; <= 150 MB at 100k)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from attrs import frozen

from ._harness import ROOT, BenchResult, SimOptions, SimProcess, Table, Target, fmt, peak_rss_mb

__all__ = ["CliSimOptions", "child", "measure", "run", "write_jobs"]

MODEL = "gemini-omni-flash-preview"
TIME_SCALE = 0.001
MAX_IN_FLIGHT = 256
SIZES, QUICK_SIZES = (0, 10_000, 100_000), (0, 200, 600)
_VMRSS = re.compile(r"^VmRSS:\s+(\d+) kB", re.MULTILINE)


@frozen(kw_only=True)
class CliSimOptions(SimOptions):
    """The harness's simulator options plus ``url_ttl`` (simulated seconds a result URL
    lives; None: the simulator's default, a day)."""

    url_ttl: float | None = None

    def to_args(self) -> list[str]:
        """Command-line flags for ``python -m omnivid.testing``."""
        extra = [] if self.url_ttl is None else ["--url-ttl", repr(self.url_ttl)]
        return [*super().to_args(), *extra]


def write_jobs(path: Path, lines: int) -> Path:
    """A batch file of ``lines`` distinct jobs, each with its own key (``clip-000001``...):
    explicit keys are what the command line holds most for (see ``omnivid.cli._jobindex``)."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(1, lines + 1):
            job = {"key": f"clip-{i:06d}", "model": MODEL, "prompt": f"benchmark job {i}"}
            out.write(json.dumps(job) + "\n")
    return path


def child(argv: list[str]) -> None:
    """The child process: ``argv = [REPORT, "--", *CLI_ARGS]``; runs the command line here,
    then writes its exit status, time and peak RSS to REPORT."""
    from omnivid.cli import main

    report, cli_args = Path(argv[0]), argv[2:]
    started = time.perf_counter()
    code = main(cli_args)
    report.write_text(
        json.dumps(
            {"exit": code, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}
        )
    )


def _rss_mb(pid: int) -> float | None:
    try:
        match = _VMRSS.search(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 / 1e6 if match else None


def measure(lines: int, *, url_ttl: float | None = None) -> dict[str, Any]:
    """Run ``omnivid batch`` over ``lines`` lines in a child process against a fresh
    simulator; its report, RSS samples, the rows of results.jsonl and the server's counts."""
    options = CliSimOptions(time_scale=TIME_SCALE, url_ttl=url_ttl)
    with tempfile.TemporaryDirectory(prefix="omnivid-b4cli-") as tmp, SimProcess(options) as sim:
        folder = Path(tmp)
        jobs = write_jobs(folder / "jobs.jsonl", lines)
        out, report = folder / "out", folder / "report.json"
        cli = [
            "batch", str(jobs), "--out", str(out), "--max-in-flight", str(MAX_IN_FLIGHT),
            "--base-url", f"apimart={sim.base_url('apimart')}", "--time-scale", str(TIME_SCALE),
            "--progress", "quiet",
        ]  # fmt: skip
        env = {**os.environ, "APIMART_API_KEY": sim.api_key, "PYTHONUNBUFFERED": "1"}
        with (folder / "stdout").open("w") as stdout, (folder / "stderr").open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.b4_cli", "--child", str(report), "--", *cli],
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
            started = time.monotonic()
            samples: list[tuple[float, float]] = []
            while proc.poll() is None:
                rss = _rss_mb(proc.pid)
                if rss is not None and rss > 5:  # (not the moment before its exec)
                    samples.append((round(time.monotonic() - started, 1), round(rss, 1)))
                time.sleep(0.5)
        if not report.exists():
            raise RuntimeError(
                f"B4-cli child ({lines} lines) failed:\n{(folder / 'stderr').read_text()[-3000:]}"
            )
        result: dict[str, Any] = json.loads(report.read_text())
        rows = _rows(out / "results.jsonl")
        stats = sim.stats()
    statuses = Counter(str(row["status"]) for row in rows)
    result.update(
        lines=lines,
        rows=len(rows),
        distinct_lines=len({row["line"] for row in rows}),
        ok=sum(1 for row in rows if row["ok"]),
        statuses=dict(statuses),
        expired=statuses.get("expired", 0),
        rss_samples=samples,
        server_submits=int(stats["submits"]),
        server_downloads=int(stats["downloads"]),
    )
    return result


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(quick: bool = False) -> BenchResult:
    """Run B4-cli and return its result."""
    started = time.perf_counter()
    sizes = QUICK_SIZES if quick else SIZES
    reports = [measure(n) for n in sizes]
    table = Table(
        ["lines", "rows", "ok", "expired", "peak RSS (MB)", "wall s", "lines/s", "submits"]
    )
    for r in reports:
        table.add(
            f"{r['lines']:,}",
            f"{r['rows']:,}",
            f"{r['ok']:,}",
            f"{r['expired']:,}",
            fmt(r["peak_rss_mb"], 1),
            fmt(r["seconds"], 1),
            fmt(r["lines"] / r["seconds"], 0) if r["lines"] else "-",
            f"{r['server_submits']:,}",
        )
    mid, big = reports[1], reports[2]
    growth = big["peak_rss_mb"] / mid["peak_rss_mb"]
    one_row_each = all(r["rows"] == r["distinct_lines"] == r["lines"] for r in reports)
    tenth = max(len(big["rss_samples"]) // 10, 1)
    result = BenchResult(
        "b4-cli",
        "the command line's memory, instant-ish jobs from a file",
        params={
            "sizes": list(sizes),
            "max_in_flight": MAX_IN_FLIGHT,
            "time_scale": TIME_SCALE,
            "model": MODEL,
        },
        tables=[table],
        targets=[
            Target(
                f"peak RSS <= 150 MB at {big['lines']:,} lines",
                f"{fmt(big['peak_rss_mb'], 1)} MB",
                big["peak_rss_mb"] <= 150,
            ),
            Target(
                f"growth {mid['lines']:,} -> {big['lines']:,} lines <= 1.3x",
                f"{growth:.2f} x",
                growth <= 1.3,
            ),
            Target(
                "results.jsonl: exactly one row per line",
                "yes" if one_row_each else "no",
                one_row_each,
            ),
        ],
        notes=[
            "each size in a fresh child process running `omnivid batch` (omnivid.cli.main) "
            "against a fresh `omnivid sim --time-scale 0.001` process; peak RSS is the child's "
            "VmHWM; the 0-line row is the floor (interpreter, imports, an empty run)",
            "every line has its own key (`clip-000001`...): the first read of the file holds "
            "them all for a moment (a dict of keys and a set of their file stems, about 18 MB "
            "at 100,000 lines, freed before anything runs); lines without keys (keyed by their "
            "number) hold a byte each instead",
            "RSS over the {}-line run (MB, every tenth of its samples): {}".format(
                f"{big['lines']:,}",
                ", ".join(f"{rss:g} at {t:g} s" for t, rss in big["rss_samples"][::tenth]),
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
