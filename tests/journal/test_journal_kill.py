"""A SIGKILL at any moment loses no task id, causes no double submission and never lets a
budget (``max_cost``) be passed over the reruns.

The simulator runs in its own process (it must outlive the client). The client process
(``kill_child.py``) is killed with SIGKILL at random moments of its run, several times, then
run once more to the end. The simulator's own records are then checked against the journal.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnivid import Journal

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
JOBS = 300
KILLS = 5


@pytest.fixture
def sim_process() -> Iterator[tuple[str, str, str]]:
    """An out-of-process simulator: (apimart base URL, API key, stats URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnivid.testing", "--port", "0", "--time-scale", "0.001"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    key = ""
    for line in proc.stdout:
        word, _, rest = line.strip().partition(" ")
        if word in ("apimart", "evolink"):
            urls[word] = rest.strip()
        elif line.startswith("api key:"):
            key = line.split(":", 1)[1].strip()
            break
    base = urls["apimart"]
    try:
        yield base, key, base.rsplit("/", 1)[0] + "/_sim/stats"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()


def _child(
    base: str, key: str, journal: Path, jobs: int = JOBS, cap: float | None = None
) -> subprocess.Popen[str]:
    extra = [] if cap is None else [str(cap)]
    return subprocess.Popen(
        [sys.executable, str(HERE / "kill_child.py"), base, key, str(journal), str(jobs), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_sigkill_loses_no_task_id_and_never_submits_twice(
    sim_process: tuple[str, str, str], tmp_path: Path
) -> None:
    """Killed 5 times mid-run then finished: one task per request, every id journaled."""
    base, key, stats_url = sim_process
    journal = tmp_path / "journal.sqlite"
    rng = random.Random(2024)
    kills = 0
    for _ in range(KILLS):
        child = _child(base, key, journal)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        try:
            child.wait(timeout=rng.uniform(0.02, 0.15))
        except subprocess.TimeoutExpired:
            child.kill()  # SIGKILL: no finally, no cleanup
            child.wait()
            kills += 1
        child.stdout.close()
    with Journal.open(journal) as j:
        before = j.counts()
    # the killed runs got somewhere, and left work in flight for the last run to resume
    assert before.get("completed", 0) > 0 and before.get("submitted", 0) > 0
    final = _child(base, key, journal)
    out, _ = final.communicate(timeout=60)
    assert kills >= 3 and out.strip().endswith(f"done {JOBS}")

    with urllib.request.urlopen(stats_url) as resp:
        stats = json.load(resp)
    with Journal.open(journal) as j:
        entries = {e.key: e for e in j.entries()}
    journaled = {t for e in entries.values() for t in e.task_ids}
    ambiguous = [e for e in entries.values() if e.state == "intent"]
    # no request fingerprint was accepted twice
    assert max(stats["tasks_by_fingerprint"].values()) == 1
    # every task the provider created is in the journal, unless its job is reported ambiguous
    assert len(set(stats["tasks"]) - journaled) <= len(ambiguous)
    assert len(entries) == JOBS
    assert all(e.terminal or e.state == "intent" for e in entries.values())


def _stats(stats_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(stats_url) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def test_sigkills_and_reruns_never_charge_past_the_cap(
    sim_process: tuple[str, str, str], tmp_path: Path
) -> None:
    """Killed 5 times then rerun twice, 20 jobs at 0.4 under max_cost=2.0 cost at most 2.0."""
    base, key, stats_url = sim_process
    journal = tmp_path / "journal.sqlite"
    rng = random.Random(7)
    kills = 0
    for _ in range(KILLS):
        child = _child(base, key, journal, jobs=20, cap=2.0)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        try:
            child.wait(timeout=rng.uniform(0.01, 0.12))
        except subprocess.TimeoutExpired:
            child.kill()  # SIGKILL: no finally, no cleanup
            child.wait()
            kills += 1
        child.stdout.close()
    for _ in range(2):  # then plain reruns to the end
        out, _ = _child(base, key, journal, jobs=20, cap=2.0).communicate(timeout=60)
        assert out.strip().endswith("done 20")
    # every task the simulator accepted ends now (those of ambiguous jobs too) and is charged
    request = urllib.request.Request(
        stats_url.replace("/stats", "/advance"),
        data=json.dumps({"seconds": 10_000}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()
    stats = _stats(stats_url)
    assert kills >= 2
    assert 0 < len(stats["tasks"]) <= 5
    assert stats["total_cost"] <= 2.0 + 1e-9
