"""The README's "Scaling out" block runs as written, in two worker processes at once on one
batch (a database of its own): each job is submitted once, and each worker prints every job."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from pghelp import as_url

from omnivid.testing import Simulator

sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
from test_readme import RUNNER, block_with, user_env

pytestmark = pytest.mark.anyio


async def test_the_scaling_out_block_runs_in_two_workers_at_once(
    sim: Simulator, fresh_url: str, tmp_path: Path
) -> None:
    """Two copies of the block at once: 6 tasks in all, 6 lines from each worker, every job
    ok; each job ran here in one worker and came from the journal (or ran) in the other."""
    code = block_with("batch=")
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {**user_env(sim), "DATABASE_URL": as_url(fresh_url)}
    outputs: list[str] = []

    async def worker() -> None:
        with anyio.fail_after(90):
            done = await anyio.run_process(
                [sys.executable, str(RUNNER), str(script)], cwd=tmp_path, env=env, check=False
            )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout.decode())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
    assert sim.stats.submits == 6 and set(sim.stats.tasks_by_fingerprint.values()) == {1}
    for out in outputs:
        rows = [line.split() for line in out.splitlines()]
        assert sorted(r[0] for r in rows) == [f"boat-{i}" for i in range(6)]
        assert all(r[1] == "True" for r in rows)
