"""``omnivid batch`` as a subprocess: results, downloads, errors, budget, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from clitools import (
    REPO,
    SIM_KEY,
    SimProcess,
    read_results,
    run_cli,
    start_cli,
    wait_for_submitted,
    write_jobs,
)


def ext(prompt: str, **fields: Any) -> dict[str, Any]:
    """An Omni-Flash-Ext job."""
    return {"model": "Omni-Flash-Ext", "prompt": prompt, "duration": 4, **fields}


def batch_on(
    sim: SimProcess, jobs: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``omnivid batch`` against the out-of-process simulator."""
    return run_cli(
        "batch",
        str(jobs),
        "--out",
        str(out),
        "--progress",
        "log",
        *sim.cli_args(),
        *extra,
        env=sim.env(),
    )


def test_readme_quick_start(tmp_path: Path) -> None:
    """The README's ``--simulate`` command runs every example job end to end, quickly."""
    started = time.monotonic()
    done = run_cli(
        "batch",
        str(REPO / "examples" / "prompts.jsonl"),
        "--simulate",
        "--out",
        "runs/demo",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    results = read_results(tmp_path / "runs" / "demo")
    assert len(results) == 12
    assert all(r["ok"] and r["status"] == "completed" for r in results)
    for r in results:
        (video,) = r["videos"]
        assert (tmp_path / video).read_bytes()[4:8] == b"ftyp"
    assert "omnivid: 12 job(s): 12 ok" in done.stdout
    assert "results: runs/demo/results.jsonl" in done.stdout


def test_malformed_line_reported_and_rest_run(tmp_path: Path) -> None:
    """Bad lines are reported with their numbers; the others still run; exit status 1."""
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [ext("one"), '{"model": "Omni-Flash-Ext", "prompt": ', ext("three", duration=7), ext("4")],
    )
    done = run_cli(
        "batch",
        str(jobs),
        "--out",
        str(tmp_path / "out"),
        "--simulate",
        "--sim-time-scale",
        "0.002",
        "--progress",
        "log",
    )
    assert done.returncode == 1
    assert f"omnivid: {jobs}: line 2: not valid JSON" in done.stderr
    assert f"omnivid: {jobs}: line 3: duration=7" in done.stderr
    results = {r["line"]: r for r in read_results(tmp_path / "out")}
    assert [results[n]["status"] for n in (1, 2, 3, 4)] == [
        "completed",
        "invalid",
        "invalid",
        "completed",
    ]
    assert "2 ok, 2 invalid" in done.stdout
    assert "Traceback" not in done.stderr


def test_reused_key_keeps_one_row_per_line(tmp_path: Path) -> None:
    """A later line reusing a key is an invalid row of its own: one row per line, counts agree."""
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            ext("first", key="a"),
            ext("second", key="b"),
            "# a comment line has no row",
            ext("again", key="a"),
            ext("bad", key="c", duration=7),
            ext("fails [[fail:moderation]]", key="d"),
        ],
    )
    out = tmp_path / "out"
    done = run_cli(
        "batch", str(jobs), "--out", str(out), "--simulate", "--sim-time-scale", "0.002",
        "--progress", "log", "--max-attempts", "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"omnivid: {jobs}: line 4: key 'a' is already used on line 1" in done.stderr
    results = read_results(out)
    assert [(r["line"], r["key"], r["status"]) for r in results] == [
        (1, "a", "completed"),
        (2, "b", "completed"),
        (4, "a", "invalid"),
        (5, "c", "invalid"),
        (6, "d", "failed"),
    ]
    assert "omnivid: 5 job(s): 2 ok, 1 failed, 2 invalid\n" in done.stdout
    assert "[5/5] " in done.stderr  # the progress count reaches every line


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    """Without a key the batch stops before anything: one line naming the variable."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("one")])
    done = run_cli("batch", str(jobs), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr == (
        "omnivid: error: no API key for apimart: set APIMART_API_KEY "
        "(or use --simulate to try omnivid without one)\n"
    )
    assert not (tmp_path / "out").exists()


def test_max_cost_stops_submitting(sim_process: SimProcess, tmp_path: Path) -> None:
    """``--max-cost`` submits only what fits; the rest is ``skipped`` and the exit status 1."""
    before = sim_process.stats()
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext(f"budget {i}") for i in range(5)])
    done = batch_on(sim_process, jobs, tmp_path / "out", "--max-cost", "1.0")
    assert done.returncode == 1
    after = sim_process.stats()
    assert after["total_cost"] - before["total_cost"] <= 1.0 + 1e-9
    statuses = sorted(r["status"] for r in read_results(tmp_path / "out"))
    assert statuses == ["completed", "completed", "skipped", "skipped", "skipped"]
    assert "2 ok, 3 skipped" in done.stdout


def test_failed_task_fails_the_job(tmp_path: Path) -> None:
    """A task refused by moderation is a failed job with its reason; exit status 1."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("fine"), ext("bad [[fail:moderation]]")])
    done = run_cli(
        "batch",
        str(jobs),
        "--out",
        str(tmp_path / "out"),
        "--simulate",
        "--sim-time-scale",
        "0.002",
        "--progress",
        "log",
    )
    assert done.returncode == 1
    failed = read_results(tmp_path / "out")[1]
    assert (failed["status"], failed["ok"], failed["attempts"]) == ("failed", False, 1)
    assert "moderation" in failed["error"]
    assert failed["error"].startswith("task failed: ") and "task_failed" not in failed["error"]
    assert "1 ok, 1 failed" in done.stdout


def test_broken_download_fails_only_that_job(tmp_path: Path) -> None:
    """A video that cannot be downloaded fails its job, recorded; the batch goes on."""
    jobs = write_jobs(
        tmp_path / "jobs.jsonl", [ext("cut [[fault:truncate-download*50]]"), ext("whole")]
    )
    done = run_cli(
        "batch",
        str(jobs),
        "--out",
        str(tmp_path / "out"),
        "--simulate",
        "--sim-time-scale",
        "0.002",
        "--progress",
        "log",
    )
    assert done.returncode == 1
    cut, whole = read_results(tmp_path / "out")
    assert (cut["status"], cut["ok"]) == ("completed", False)
    assert cut["error"].startswith("download failed:")
    assert cut["task_id"]
    assert whole["ok"]


def test_rerun_submits_nothing(sim_process: SimProcess, tmp_path: Path) -> None:
    """A rerun of a finished batch takes every result from the journal: no submit, no poll."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("again 1"), ext("again 2", key="two")])
    first = batch_on(sim_process, jobs, tmp_path / "out")
    assert first.returncode == 0, first.stderr
    before = sim_process.stats()
    second = batch_on(sim_process, jobs, tmp_path / "out")
    after = sim_process.stats()
    assert second.returncode == 0, second.stderr
    assert (after["submits"], after["polls"]) == (before["submits"], before["polls"])
    results = read_results(tmp_path / "out")
    assert [r["key"] for r in results] == ["1", "two"]
    assert all(r["from_journal"] and r["ok"] for r in results)
    assert "0.00 this run" in second.stdout


def test_ambiguous_submit_is_reported_not_resubmitted(
    sim_process: SimProcess, tmp_path: Path
) -> None:
    """A submit whose answer was lost is ``ambiguous``, on this run and the next, never resent."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("lost [[fault:lost-response]]")])
    first = batch_on(sim_process, jobs, tmp_path / "out")
    assert first.returncode == 1
    assert "may have been accepted" in first.stderr
    submits = sim_process.stats()["submits"]
    second = batch_on(sim_process, jobs, tmp_path / "out")
    assert second.returncode == 1
    assert sim_process.stats()["submits"] == submits
    (result,) = read_results(tmp_path / "out")
    assert result["status"] == "ambiguous"
    assert "--resubmit-ambiguous" in second.stdout


def test_resubmit_ambiguous_on_request(sim_process: SimProcess, tmp_path: Path) -> None:
    """``--resubmit-ambiguous`` submits an ambiguous job again, as asked."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("lost again [[fault:lost-response]]")])
    assert batch_on(sim_process, jobs, tmp_path / "out").returncode == 1
    done = batch_on(sim_process, jobs, tmp_path / "out", "--resubmit-ambiguous")
    assert done.returncode == 0, done.stderr
    (result,) = read_results(tmp_path / "out")
    assert result["ok"]


def test_changed_request_under_same_key_is_a_conflict(tmp_path: Path) -> None:
    """Reusing a key for a different request is refused (``conflict``), not paid for."""
    out = tmp_path / "out"
    args = ["--out", str(out), "--simulate", "--sim-time-scale", "0.002", "--progress", "log"]
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("original", key="k")])
    assert run_cli("batch", str(jobs), *args).returncode == 0
    write_jobs(jobs, [ext("edited", key="k")])
    done = run_cli("batch", str(jobs), *args)
    assert done.returncode == 1
    (result,) = read_results(out)
    assert result["status"] == "conflict"
    assert "different request" in result["error"]


def test_api_key_never_written(sim_process: SimProcess, tmp_path: Path) -> None:
    """The API key appears in no output, results file or journal."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("secret check")])
    done = batch_on(sim_process, jobs, tmp_path / "out", "--verbose")
    assert done.returncode == 0, done.stderr
    assert SIM_KEY not in done.stdout + done.stderr
    for path in (tmp_path / "out").iterdir():
        if path.is_file():
            assert SIM_KEY.encode() not in path.read_bytes(), path


def test_ctrl_c_lists_running_tasks(sim_process: SimProcess, tmp_path: Path) -> None:
    """SIGINT stops the batch with exit status 130 after listing the task ids still running."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("long [[duration=100000]]", key="long")])
    out = tmp_path / "out"
    proc = start_cli(
        "batch",
        str(jobs),
        "--out",
        str(out),
        "--progress",
        "log",
        *sim_process.cli_args(),
        env=sim_process.env(),
    )
    task_id = wait_for_submitted(out / "journal.sqlite", "long", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"key=long task={task_id} (apimart)" in stderr
    assert "rerun the same command to resume" in stderr
    (result,) = read_results(out)
    assert (result["status"], result["task_id"]) == ("interrupted", task_id)
    assert "1 interrupted" in stdout


def test_works_without_rich(tmp_path: Path) -> None:
    """Without the optional ``rich`` package, even ``--progress bar`` falls back to log lines."""
    blocker = tmp_path / "blocker" / "rich"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    jobs = write_jobs(tmp_path / "jobs.jsonl", [ext("plain")])
    done = run_cli(
        "batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate",
        "--sim-time-scale", "0.002", "--progress", "bar",
        env={"PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "[1/1] ok key=1 task=" in done.stderr
