"""``omnivid batch`` when submits must stop (a refused key, an endpoint never reached) and
when a budget spans reruns: one line naming the cause, exit status 2, "spent X of cap Y"."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from clitools import SIM_KEY, SimProcess, read_results, run_cli, write_jobs


def ext(prompt: str) -> dict[str, Any]:
    """An Omni-Flash-Ext job of 6 s (0.4)."""
    return {"model": "Omni-Flash-Ext", "prompt": prompt, "duration": 6}


def batch(jobs: Path, out: Path, *extra: str, key: str = SIM_KEY) -> Any:
    """Run ``omnivid batch`` with log lines and the given key."""
    return run_cli(
        "batch", str(jobs), "--out", str(out), "--progress", "log", *extra,
        env={"APIMART_API_KEY": key},
    )  # fmt: skip


def test_a_wrong_key_stops_after_one_submit(sim_process: SimProcess, tmp_path: Path) -> None:
    """30 lines with a refused key: one submit, one line naming the 401, exit status 2."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext(f"wrong key {i}") for i in range(30)])
    before = sim_process.stats()["submits"]
    done = batch(
        jobs, tmp_path / "out", *sim_process.cli_args(), "--max-in-flight", "1",
        key="sk-not-the-right-key-123",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert sim_process.stats()["submits"] - before == 1
    output = done.stdout + done.stderr
    assert output.count("HTTP 401") == 1
    stop_lines = [line for line in done.stderr.splitlines() if "HTTP 401" in line]
    assert len(stop_lines) == 1 and "stopped submits" in stop_lines[0]
    assert "sk-not-the-right-key-123" not in output
    rows = read_results(tmp_path / "out")
    assert len(rows) == 30 and not any(row["ok"] for row in rows)


def test_the_cap_holds_over_reruns_and_is_shown(sim_process: SimProcess, tmp_path: Path) -> None:
    """Three runs capped at apimart=2.0 charge 2.0 in all and say spent 2.00 of cap 2.00."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext(f"capped {i}") for i in range(20)])
    before = sim_process.stats()["total_cost"]
    for _ in range(3):
        done = batch(jobs, tmp_path / "out", *sim_process.cli_args(), "--max-cost", "apimart=2.0")
        assert done.returncode == 1, done.stderr
        assert "budget apimart: spent 2.00 of cap 2.00" in done.stdout
    assert sim_process.stats()["total_cost"] - before <= 2.0 + 1e-9


def test_an_unreachable_endpoint_is_reported_fast(tmp_path: Path) -> None:
    """A closed port: a retrying line, then one line naming the URL and exit status 2, fast."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext(f"nowhere {i}") for i in range(12)])
    started = time.monotonic()
    done = batch(jobs, tmp_path / "out", "--base-url", f"apimart={url}", "--time-scale", "0.02")
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert f"cannot connect to apimart at {url}" in done.stdout + done.stderr
    assert "retrying" in done.stdout + done.stderr
    stop_lines = [
        line for line in done.stderr.splitlines() if f"cannot reach apimart at {url}" in line
    ]
    assert len(stop_lines) == 1
    assert elapsed < 20
