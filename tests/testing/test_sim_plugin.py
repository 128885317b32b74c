"""The pytest plugin: a fresh project that only installs omnivid gets a working ``omnivid_sim``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from omnivid.testing import Simulator

USER_TESTS = """
import aiohttp
import pytest


@pytest.mark.anyio
async def test_submit(omnivid_sim):
    url = omnivid_sim.base_url("apimart") + "/v1/videos/generations"
    headers = {"Authorization": f"Bearer {omnivid_sim.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"model": "Omni-Flash-Ext", "prompt": "x"},
                             headers=headers) as resp:
            assert resp.status == 200
    assert omnivid_sim.stats.submits == 1


@pytest.mark.anyio
@pytest.mark.omnivid_sim(api_keys={"mine"}, rps=5)
async def test_marker_configures(omnivid_sim):
    assert omnivid_sim.api_key == "mine"
    assert omnivid_sim.config.rps == 5
    assert omnivid_sim.config.time_scale == 0.001
"""


def test_plugin_works_in_a_fresh_project(tmp_path: Path) -> None:
    """A project with only a test file (no conftest) can use the omnivid_sim fixture."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "error" not in result.stdout


@pytest.mark.anyio
async def test_fixture_gives_a_running_simulator(omnivid_sim: Simulator) -> None:
    """In this project too, omnivid_sim is a started simulator at a fast time scale."""
    assert omnivid_sim.config.time_scale == 0.001
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{omnivid_sim.url}/_sim/stats") as resp,
    ):
        assert resp.status == 200
