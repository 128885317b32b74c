"""Fixtures for the simulator's own tests: a fast simulator and a raw aiohttp session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from omnivid.testing import Simulator


@pytest.fixture
def anyio_backend() -> str:
    """The simulator is built on aiohttp, so tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Extra `Simulator` keyword arguments; tests override this fixture or parametrize it."""
    return {}


@pytest.fixture
async def sim(sim_options: dict[str, Any]) -> AsyncIterator[Simulator]:
    """A running simulator, 1000x faster than real time, seeded."""
    options: dict[str, Any] = {"time_scale": 0.001, "seed": 7, "allow_loopback_callbacks": True}
    options.update(sim_options)
    async with Simulator(**options) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP session that opens a fresh connection per request."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session
