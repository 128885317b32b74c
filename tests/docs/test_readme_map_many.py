"""The README's map_many block (several providers in one batch) runs twice, paying once."""

from __future__ import annotations

from pathlib import Path

import pytest
import test_readme as readme  # (a module, so that its tests are not collected twice)

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_the_map_many_block_runs_twice_paying_once(sim: Simulator, tmp_path: Path) -> None:
    """Both providers' jobs run into one journal and their videos are saved; the second run
    submits nothing and prints the same results and spend."""
    code = readme.block_with("omnivid.map_many(")
    first = await readme.run_block(code, tmp_path, sim)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "runs" / "mixed.sqlite").is_file()
    videos = sorted(p.name for p in (tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 3 and any(name.startswith("task-unified-") for name in videos)
    assert sim.stats.submits == 3
    assert "apimart spent 1.4 of 5.0" in first.stdout
    assert "evolink spent 102.34 of 800" in first.stdout

    second = await readme.run_block(code, tmp_path, sim)
    assert second.returncode == 0, second.stderr
    assert sim.stats.submits == 3
    assert sorted(second.stdout.splitlines()) == sorted(first.stdout.splitlines())
