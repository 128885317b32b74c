"""Fixtures for the example apps' tests: the anyio backend and a fast simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _examples import SCALE

from omnivid.testing import Simulator


@pytest.fixture
def anyio_backend() -> str:
    """The simulator and aiohttp need asyncio."""
    return "asyncio"


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A simulator 1000x faster than real time, accepting loopback callbacks."""
    async with Simulator(time_scale=SCALE, seed=11, allow_loopback_callbacks=True) as server:
        yield server
