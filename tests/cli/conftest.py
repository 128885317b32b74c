"""Fixtures for the command-line tests (helpers live in ``clitools``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clitools import SimProcess, start_sim


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the simulator and aiohttp need it)."""
    return "asyncio"


@pytest.fixture(scope="module")
def sim_process() -> Iterator[SimProcess]:
    """A simulator in another process, shared by a test module."""
    sim = start_sim()
    try:
        yield sim
    finally:
        sim.stop()
