"""``--simulate`` behaves like the real service when stopped: Ctrl-C exits 130 with the task ids
still running, and ``kill -9`` then the same command resumes from ``DIR/simulator.sqlite``."""

from __future__ import annotations

import asyncio
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from clitools import read_results, run_cli, start_cli, wait_for_submitted, write_jobs

from omnivid import VideoRequest
from omnivid.providers import provider_for_model
from omnivid.testing import Simulator, fingerprint

SCALE = ["--time-scale", "0.002"]


def long_jobs(count: int, seconds: int) -> list[dict[str, Any]]:
    """``count`` jobs over both providers, each taking ``seconds`` simulated seconds."""
    jobs: list[dict[str, Any]] = []
    for i in range(count):
        if i % 4 == 3:
            jobs.append(
                {
                    "key": f"evo-{i}",
                    "model": "gemini-omni-flash-reference-to-video",
                    "prompt": f"robot {i} [[duration={seconds}]]",
                    "images": ["https://example.com/robot.png"],
                    "duration": 5,
                }
            )
        else:
            jobs.append(
                {
                    "key": f"ext-{i}",
                    "model": "Omni-Flash-Ext",
                    "prompt": f"shot {i} [[duration={seconds}]]",
                    "duration": 4,
                }
            )
    return jobs


def simulated_ledger(out: Path, tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    """The task ids and the tasks per fingerprint in ``OUT/simulator.sqlite`` (read from a
    copy, through a simulator started on it)."""
    copy = tmp_path / "ledger-copy.sqlite"
    shutil.copyfile(out / "simulator.sqlite", copy)

    async def read() -> tuple[list[str], dict[str, int]]:
        async with Simulator(state_file=copy) as sim:
            return list(sim.stats.tasks), dict(sim.stats.tasks_by_fingerprint)

    return asyncio.run(read())


def sim_fingerprint(job: dict[str, Any]) -> str:
    """The simulator's fingerprint of the body omnivid sends for ``job``."""
    fields = {k: v for k, v in job.items() if k != "key"}
    request = VideoRequest.from_dict(fields)
    return fingerprint(provider_for_model(request.model).build_submit_body(request))


def test_ctrl_c_in_simulated_batch_exits_130(tmp_path: Path) -> None:
    """SIGINT in ``batch --simulate``: summary, then the running task ids; 130, no traceback."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", long_jobs(3, 100000))
    out = tmp_path / "out"
    proc = start_cli(
        "batch", str(jobs), "--out", str(out), "--simulate", "--progress", "log", *SCALE
    )
    task_id = wait_for_submitted(out / "journal.sqlite", "ext-0", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "RuntimeError" not in stderr
    assert "omnivid: 3 job(s): 0 ok, 3 interrupted" in stdout
    assert f"key=ext-0 task={task_id} (apimart)" in stderr
    assert "rerun the same command to resume" in stderr


def test_ctrl_c_in_simulated_generate_exits_130(tmp_path: Path) -> None:
    """SIGINT in ``generate --simulate`` names the task and exits 130, no traceback."""
    proc = start_cli(
        "generate", "a long one [[duration=100000]]", "--model", "Omni-Flash-Ext",
        "--out", str(tmp_path), "--simulate", "--progress", "log", *SCALE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 20
    while "submitted apimart task" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += proc.stderr.readline()
    assert "submitted apimart task" in seen, seen
    task_id = seen.split("submitted apimart task ", 1)[1].split()[0]
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted: task {task_id}" in stderr


def test_kill_9_then_rerun_resumes_simulated_batch(tmp_path: Path) -> None:
    """SIGKILL mid-run, then the same command: every job ok, each submitted exactly once."""
    batch = long_jobs(8, 300)
    jobs = write_jobs(tmp_path / "jobs.jsonl", batch)
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--simulate", "--progress", "log"]
    args += [*SCALE, "--max-in-flight", "2"]
    proc = start_cli(*args)
    wait_for_submitted(out / "journal.sqlite", "ext-1", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_ids, _ = simulated_ledger(out, tmp_path)
    assert killed_ids  # the killed run left tasks running in the simulator's file

    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    assert "不存在" not in final.stderr and "not found" not in final.stderr.lower()
    results = read_results(out)
    assert [r["key"] for r in results] == [job["key"] for job in batch]
    assert all(r["ok"] and r["status"] == "completed" for r in results), results
    assert any(r["task_id"] in killed_ids for r in results)  # resumed, not submitted again
    created, per_fingerprint = simulated_ledger(out, tmp_path)
    assert {r["task_id"] for r in results} == set(created)
    assert per_fingerprint == {sim_fingerprint(job): 1 for job in batch}


def test_second_simulated_run_on_same_folder_is_refused(tmp_path: Path) -> None:
    """While a ``--simulate`` batch runs, another on the same folder stops with one line, exit 2."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", long_jobs(1, 100000))
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--simulate", "--progress", "log", *SCALE]
    first = start_cli(*args)
    try:
        wait_for_submitted(out / "journal.sqlite", "ext-0", first)
        second = run_cli(*args)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith("omnivid: error: ") and "Traceback" not in second.stderr
    assert "in use" in second.stderr


def test_missing_simulator_state_is_explained(tmp_path: Path) -> None:
    """A journal without its simulator's state file: the rerun says why its tasks are unknown."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", long_jobs(1, 10))
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--simulate", "--progress", "log", *SCALE]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "is missing" not in first.stderr
    (out / "simulator.sqlite").unlink()
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr  # finished jobs come from the journal
    assert f"{out / 'simulator.sqlite'} is missing, so the simulator starts empty" in again.stderr
