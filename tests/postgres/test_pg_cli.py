"""``omnivid batch --journal postgresql://...`` in two processes at once on one batch, and
``omnivid results``; a malformed URL, an unreachable server: one line, exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks._harness import SimOptions, SimProcess

ROOT = Path(__file__).resolve().parents[2]
JOBS = 12


@pytest.fixture
def simulator() -> Iterator[SimProcess]:
    """One simulator for every worker, in its own process."""
    with SimProcess(SimOptions(time_scale=0.01, seed=3)) as sim:
        yield sim


def omnivid(*args: str, sim: SimProcess | None = None) -> subprocess.Popen[str]:
    """``omnivid ARGS`` as a process (its output captured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIVID_")}
    env["PYTHONPATH"] = str(ROOT)
    env["APIMART_API_KEY"] = sim.api_key if sim is not None else "sk-test"
    cmd = [sys.executable, "-m", "omnivid", *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_batch_processes_share_a_batch(
    simulator: SimProcess, db_url: str, tmp_path: Path
) -> None:
    """Two `omnivid batch` on one batch (named after the jobs file): each job submitted once;
    each process saves the videos of the jobs it ran, and its results.jsonl lists every job;
    `omnivid results` prints every job, completed."""
    jobs = tmp_path / "clips.jsonl"
    jobs.write_text(
        "".join(
            json.dumps({"key": f"c{i}", "model": "gemini-omni-flash-preview", "prompt": f"p{i}"})
            + "\n"
            for i in range(JOBS)
        )
    )
    common = ["--journal", db_url, "--base-url", f"apimart={simulator.base_url('apimart')}",
              "--time-scale", "0.01", "--progress", "quiet", "--max-in-flight", "4"]  # fmt: skip
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [omnivid("batch", str(jobs), "--out", str(o), *common, sim=simulator) for o in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    stats = simulator.stats()
    assert stats["double_submissions"] == {} and len(stats["tasks"]) == JOBS
    videos = [{p.stem for p in (o / "videos").glob("*.mp4")} for o in outs]
    assert videos[0] | videos[1] == {f"c{i}" for i in range(JOBS)}
    assert not videos[0] & videos[1]  # each saved the videos of the jobs it ran
    for out in outs:
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert sorted(r["key"] for r in rows) == sorted(f"c{i}" for i in range(JOBS))
        assert all(r["ok"] and r["status"] == "completed" for r in rows)
    shown = omnivid("results", "--journal", db_url, "--batch", "clips")
    printed, err = shown.communicate(timeout=60)
    assert shown.returncode == 0, err
    rows = [json.loads(line) for line in printed.splitlines()]
    assert [r["key"] for r in rows] == sorted(f"c{i}" for i in range(JOBS))
    assert {r["status"] for r in rows} == {"completed"} and all(r["ok"] for r in rows)
    assert all(r["line"] is None and r["task_id"] for r in rows)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/nowhere", "cannot connect to the database"),
        ("postgresql://postgres@127.0.0.1:5432/db?sslmode=bogus", "database"),
    ],
)
def test_a_bad_database_is_one_line_and_exit_2(url: str, says: str, tmp_path: Path) -> None:
    """An unreachable server or a malformed URL: one line naming it, exit status 2 (for
    `omnivid results` and `omnivid batch` alike)."""
    jobs = tmp_path / "j.jsonl"
    jobs.write_text('{"model": "gemini-omni-flash-preview", "prompt": "x"}\n')
    for args in (
        ["results", "--journal", url, "--batch", "b"],
        ["batch", str(jobs), "--out", str(tmp_path / "o"), "--journal", url,
         "--base-url", "apimart=http://127.0.0.1:9/apimart", "--progress", "quiet"],
    ):  # fmt: skip
        proc = omnivid(*args)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and says in lines[0], err
        assert "Traceback" not in err
