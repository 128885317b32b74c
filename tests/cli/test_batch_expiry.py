"""``omnivid batch`` and result URLs that expire: a job whose URL expired before its video was
saved ends once as ``expired`` (task id kept, the journal noting it), a rerun reports it from
the journal without another request, and downloads falling behind hold new submits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from clitools import SimProcess, read_results, run_cli, start_sim, write_jobs

import omnivid
from omnivid.cli._batch import run_batch
from omnivid.cli._batch_run import BatchCommand, BatchRun
from omnivid.cli._saving import EXPIRED_NOTE
from omnivid.cli._videos import VideoFiles
from omnivid.journal import Journal
from omnivid.testing import Simulator

GEMINI = "gemini-omni-flash-preview"


def gemini(prompt: str, **fields: Any) -> dict[str, Any]:
    """A gemini-omni-flash-preview job."""
    return {"model": GEMINI, "prompt": prompt, **fields}


def batch_on(sim: SimProcess, jobs: Path, out: Path) -> Any:
    """``omnivid batch`` against the out-of-process simulator."""
    return run_cli(
        "batch", str(jobs), "--out", str(out), "--progress", "log", *sim.cli_args(),
        env=sim.env(),
    )  # fmt: skip


def test_an_expired_url_ends_the_job_once_and_a_rerun_reports_it(tmp_path: Path) -> None:
    """With URLs expiring as their tasks complete, every job ends ``expired`` with its task
    id after one download try and one read of the task (no fresh URL: the simulator gives the
    same one); the rerun reports them from the journal, sending nothing."""
    sim = start_sim("--url-ttl", "0")
    try:
        jobs = write_jobs(tmp_path / "jobs.jsonl", [gemini(f"clip {i}") for i in range(3)])
        out = tmp_path / "out"
        done = batch_on(sim, jobs, out)
        assert done.returncode == 1, done.stderr
        rows = read_results(out)
        assert [r["status"] for r in rows] == ["expired"] * 3
        for row in rows:
            assert row["task_id"] and not row["ok"] and row["videos"] == []
            assert row["error"].startswith(EXPIRED_NOTE) and row["task_id"] in row["error"]
        assert "omnivid: 3 job(s): 0 ok, 3 expired" in done.stdout
        assert "expired jobs completed (and were billed)" in done.stdout
        first = sim.stats()
        assert first["downloads"] == 3
        with Journal.open(out / "journal.sqlite") as journal:
            for row in rows:
                entry = journal.get(row["key"])
                assert entry is not None and entry.state == "completed"
                assert (entry.error or "").startswith(EXPIRED_NOTE)

        again = batch_on(sim, jobs, out)
        assert again.returncode == 1, again.stderr
        rerun = read_results(out)
        assert [(r["status"], r["from_journal"]) for r in rerun] == [("expired", True)] * 3
        assert [r["task_id"] for r in rerun] == [r["task_id"] for r in rows]
        second = sim.stats()
        for counter in ("submits", "polls", "downloads"):
            assert second[counter] == first[counter], counter
    finally:
        sim.stop()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (in steps of 5 ms) until ``condition()`` holds."""
    while not condition():  # noqa: ASYNC110 (a condition on another process's counters)
        await anyio.sleep(0.005)


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Tasks complete at their first poll."""
    return {"instant": True}


@pytest.mark.anyio
async def test_downloads_falling_behind_hold_submits(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While no download finishes, the batch takes no new job once the backlog is full (64
    here): only the tasks already running (4, and as many whose outcomes were on their way)
    and the job the map holds come after; when downloads go on, so does the batch, to one row
    per line."""
    release = anyio.Event()

    async def stuck(videos: VideoFiles, client: omnivid.AsyncClient, key: str, task: Any) -> Any:
        await release.wait()
        return videos.paths(key, task)

    monkeypatch.setattr("omnivid.cli._batch_run.save_fresh", stuck)
    monkeypatch.setenv("APIMART_API_KEY", sim.api_key)
    jobs = write_jobs(tmp_path / "jobs.jsonl", [gemini(f"clip {i}") for i in range(150)])
    out = tmp_path / "out"
    command = BatchCommand(
        jobs=jobs,
        out=out,
        max_in_flight=4,
        base_urls=(sim.base_url("apimart"),),
        time_scale=0.001,
        progress="quiet",
    )
    runs: list[BatchRun] = []
    codes: list[int] = []

    async def batch() -> None:
        codes.append(await run_batch(command, observe=runs.append))

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch)
        await until(lambda: bool(runs) and runs[0].downloads.full)
        run, queue = runs[0], runs[0].downloads
        # the tasks running (and the job the map holds) end and join the backlog; then no job
        # is left but those waiting for their download
        await until(lambda: len(run.pending) == queue.backlog == sim.stats.submits)
        submitted = sim.stats.submits
        await anyio.sleep(0.1)  # 100 simulated seconds: room for many more submits
        # at most the tasks running when it filled, the outcomes on their way then, the job
        # the map holds: 64 + 4 + 4 + 1
        assert sim.stats.submits == submitted <= 73
        assert queue.full and queue.backlog == submitted and queue.running == 16
        release.set()
    assert codes == [0]
    rows = read_results(out)
    assert [r["line"] for r in rows] == list(range(1, 151)) and all(r["ok"] for r in rows)
    assert sim.stats.submits == 150 and queue.held >= 1
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 150 and all(json.loads(line)["status"] == "completed" for line in lines)
