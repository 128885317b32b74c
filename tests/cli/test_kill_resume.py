"""SIGKILL ``omnivid batch`` at random moments, rerun it to the end, and audit the simulator's
ledger: no task id lost, nothing submitted twice except jobs reported as ambiguous."""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clitools import SimProcess, read_results, run_cli, start_cli, start_sim, write_jobs

from omnivid import VideoRequest
from omnivid.providers import provider_for_model
from omnivid.testing import fingerprint

KILLS = 5
"""At most this many killed runs; the workload is sized so that at least 3 land mid-run."""


def jobs() -> list[dict[str, Any]]:
    """Nineteen jobs over all three models, one of which loses its submit answer."""
    out: list[dict[str, Any]] = []
    for i in range(12):
        out.append(
            {"model": "Omni-Flash-Ext", "prompt": f"shot {i} [[duration=200]]", "duration": 4}
        )
    for i in range(3):
        out.append({"model": "gemini-omni-flash-preview", "prompt": f"scene {i} [[duration=150]]"})
    for i in range(2):
        out.append(
            {
                "model": "gemini-omni-flash-reference-to-video",
                "prompt": f"robot {i} [[duration=200]]",
                "images": ["https://example.com/robot.png"],
                "duration": 5,
            }
        )
    out.append({"model": "Omni-Flash-Ext", "prompt": "lost [[fault:lost-response]]", "duration": 4})
    return out


def sim_fingerprint(job: dict[str, Any]) -> str:
    """The simulator's fingerprint of the body omnivid sends for ``job``."""
    request = VideoRequest.from_dict(job)
    return fingerprint(provider_for_model(request.model).build_submit_body(request))


@pytest.fixture
def sim() -> Iterator[SimProcess]:
    """A fresh simulator process: its ledger holds this test's tasks only."""
    process = start_sim()
    try:
        yield process
    finally:
        process.stop()


def test_sigkill_and_resume_pays_once_per_job(sim: SimProcess, tmp_path: Path) -> None:
    """After several SIGKILLs and a final rerun, each job has exactly one task (ambiguous: <= 1)."""
    batch = jobs()
    path = write_jobs(tmp_path / "jobs.jsonl", batch)
    out = tmp_path / "out"
    args = ["batch", str(path), "--out", str(out), "--max-in-flight", "2", "--progress", "log"]
    args += sim.cli_args()
    rng = random.Random(20240611)
    kills = 0
    for _ in range(KILLS):
        proc = start_cli(*args, env=sim.env())
        try:
            proc.wait(timeout=rng.uniform(0.5, 1.2))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        proc.communicate()
        if proc.returncode >= 0:  # it finished on its own: nothing left to interrupt
            break
    final = run_cli(*args, env=sim.env())
    assert kills >= 3, "the batch finished too early to be killed"
    assert final.returncode == 1, final.stderr  # the lost-response job stays ambiguous
    assert "Traceback" not in final.stderr

    results = read_results(out)
    assert [r["line"] for r in results] == list(range(1, len(batch) + 1))
    stats = sim.stats()
    ledger: dict[str, int] = stats["tasks_by_fingerprint"]
    created_ids = set(stats["tasks"])
    for job, result in zip(batch, results, strict=True):
        created = ledger.get(sim_fingerprint(job), 0)
        if result["status"] == "ambiguous":
            assert created <= 1, result
            assert f"key={result['key']}: " in final.stderr  # reported to the user
            continue
        assert created == 1, result
        assert result["ok"], result
        assert result["task_id"] in created_ids
        assert all(Path(v).exists() for v in result["videos"])
    assert results[-1]["status"] == "ambiguous"
    assert set(ledger) <= {sim_fingerprint(job) for job in batch}
    assert not list((out / "videos").glob("*.part"))
