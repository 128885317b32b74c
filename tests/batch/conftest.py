"""Fixtures for the scheduler tests (the simulator fixtures come from tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The simulator and aiohttp run on asyncio."""
    return "asyncio"
