"""Smoke tests: every benchmark runs end to end at tiny size (``--quick``) so none can rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import SimOptions, percentile
from omnivid.testing.__main__ import _parser

ROOT = Path(__file__).resolve().parents[2]


def _python(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` from the checkout's root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_quick(name: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``python -m benchmarks NAME --quick`` into ``tmp_path``; its JSON entry."""
    out = tmp_path / "quick.json"
    proc = _python(
        "benchmarks", name, "--quick", "--json", str(out), "--markdown", str(tmp_path / "quick.md")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"### {name.upper()}:" in proc.stdout
    assert (tmp_path / "quick.md").read_text().count("|") > 10
    result: dict[str, Any] = json.loads(out.read_text())["benchmarks"][name]
    return result


def test_b1_both_contenders_finish_every_job(tmp_path: Path) -> None:
    """B1 runs raw aiohttp and omnivid over the same jobs, each completing all of them."""
    result = run_quick("b1", tmp_path)
    jobs = result["params"]["jobs"]
    for summary in result["data"]["summary"].values():
        assert summary["completed"] == jobs
        assert summary["requests"] == 2 * jobs
    assert result["data"]["ratio"] > 0


def test_b2_measures_polls_and_delays_for_each_poller(tmp_path: Path) -> None:
    """B2 reports polls per task and non-negative completion delays for all three pollers."""
    result = run_quick("b2", tmp_path)
    assert set(result["data"]) == {"omnivid map", "fixed 5 s", "fixed 1 s"}
    for figures in result["data"].values():
        assert figures["completed"] == figures["jobs"]
        assert figures["polls_per_task"] >= 1
        assert figures["delay_p95_s"] >= figures["delay_p50_s"]  # both measured, not NaN
        assert figures["delay_p95_s"] > 0
    assert (
        result["data"]["fixed 1 s"]["polls_per_task"]
        > result["data"]["fixed 5 s"]["polls_per_task"]
    )


def test_b3_semaphore_loop_hits_the_server_limit(tmp_path: Path) -> None:
    """B3 runs both server modes for all three contenders; the semaphore-only loop draws 429s;
    the small batch's first run is measured under both gate policies."""
    result = run_quick("b3", tmp_path)
    first = result["data"].pop("first_run")
    assert len(result["data"]) == 6
    for name, figures in result["data"].items():
        assert figures["answers"] > 0, name
    assert result["data"]["semaphore only / no Retry-After"]["server_429s"] > 0
    assert set(first) == {
        f"{policy} / {mode}"
        for policy in ("aimd", "recover")
        for mode in ("Retry-After: 1", "no Retry-After")
    }
    for figures in first.values():
        assert figures["completed"] == figures["jobs"]
        assert 0 <= figures["share_429"] < 1 and figures["answers"] >= 2 * figures["jobs"]


def test_b6_runs_every_contender_through_every_scenario(tmp_path: Path) -> None:
    """B6 runs the two gate policies and the semaphore loop calm, in a storm and under 1%
    random 429s, each finishing every job; the storm really draws 429s."""
    result = run_quick("b6", tmp_path)
    data = result["data"]
    runs = {k: v for k, v in data.items() if " / " in k}
    assert len(runs) == 9
    for name, figures in runs.items():
        assert figures["completed"] == result["params"]["jobs"], name
    assert runs["semaphore only / storm"]["server_429s"] > 0
    assert runs["omnivid map, recover / 1% 429s"]["rate_kept"] > 0
    assert data["storm_over_calm"] > 0


def test_b4_reports_peak_rss_per_size(tmp_path: Path) -> None:
    """B4 runs every size in a child process and reports its peak RSS."""
    result = run_quick("b4", tmp_path)
    runs = result["data"]["runs"]
    assert [r["jobs"] for r in runs] == result["params"]["sizes"]
    for r in runs:
        assert r["ok"] == r["jobs"] == r["server_submits"]
        assert 10 < r["peak_rss_mb"] < 1000


def test_b4_cli_reports_peak_rss_and_one_row_per_line(tmp_path: Path) -> None:
    """B4-cli runs ``omnivid batch`` per size in a child process: its peak RSS, and exactly
    one row per line of the batch file."""
    result = run_quick("b4-cli", tmp_path)
    runs = result["data"]["runs"]
    assert [r["lines"] for r in runs] == result["params"]["sizes"]
    for r in runs:
        assert r["exit"] == 0
        assert r["rows"] == r["distinct_lines"] == r["ok"] == r["lines"] == r["server_submits"]
        assert 10 < r["peak_rss_mb"] < 1000


def test_b7_runs_both_contenders_and_counts_expired_results(tmp_path: Path) -> None:
    """B7 runs the command line and the naive loop over the same jobs with short-lived URLs,
    counting what each saved and lost, with the CLI's download backlog over time."""
    result = run_quick("b7", tmp_path)
    jobs = result["params"]["jobs"]
    runs = result["data"]["runs"]
    assert set(runs) == {"omnivid batch", "map + 4 downloads"}
    for r in runs.values():
        assert r["jobs"] == jobs == r["server_submits"]
        assert r["saved"] + r["expired"] + r["failed"] == jobs
        assert r["samples"]
    assert runs["omnivid batch"]["exit"] in (0, 1)


def test_b5_compares_with_and_without_journal(tmp_path: Path) -> None:
    """B5 runs omnivid with and without a journal and reports the cost."""
    result = run_quick("b5", tmp_path)
    jobs = result["params"]["jobs"]
    assert len(result["data"]["summary"]) == 2
    for summary in result["data"]["summary"].values():
        assert summary["completed"] == jobs
    assert result["data"]["cost"] < 1


def test_overhead_probe_runs_map_with_and_without_a_journal() -> None:
    """The overhead probe's fake session serves map's submits and polls, journal or not."""
    proc = _python("benchmarks.overhead", "--jobs", "40", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "map + journal:" in proc.stdout and "journal adds:" in proc.stdout


def test_unknown_benchmark_is_refused() -> None:
    """``python -m benchmarks`` names the valid choices when given an unknown one."""
    proc = _python("benchmarks", "b9")
    assert proc.returncode == 2
    assert "choose from b1, b2, b3, b4, b4-cli, b5" in proc.stderr


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1.0), (0.5, 2.5), (0.95, 3.85), (1.0, 4.0)])
def test_percentile_interpolates_linearly(q: float, expected: float) -> None:
    """The harness's percentile interpolates between closest ranks like numpy's default."""
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_simulator_accepts_every_harness_flag() -> None:
    """The flags the harness passes are ones ``python -m omnivid.testing`` understands."""
    options = SimOptions(
        time_scale=0.01, instant=True, rps=5, burst=2, retry_after=None, estimate_error=0.3
    )
    args = _parser().parse_args(["--port", "0", *options.to_args()])
    assert (args.time_scale, args.instant, args.rps, args.burst) == (0.01, True, 5.0, 2.0)
    assert (args.retry_after, args.estimate_error) == ("none", 0.3)
