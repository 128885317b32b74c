"""pytest plugin (registered through the ``pytest11`` entry point when omnivid is installed).

Fixture ``omnivid_sim``: a running `Simulator` with ``time_scale=0.001`` (a four-minute task
takes a quarter of a second), a fixed seed and loopback callbacks allowed. It is an async
fixture for anyio's pytest plugin (bundled with anyio): use it from ``@pytest.mark.anyio`` tests
on the asyncio backend (trio variants are skipped: the simulator is built on aiohttp)::

    @pytest.mark.anyio
    async def test_generate(omnivid_sim):
        async with omnivid_sim.client("apimart") as client:  # an omnivid.AsyncClient on it
            ...
        assert omnivid_sim.stats.double_submissions == {}

Settings per test, as `Simulator` keyword arguments::

    @pytest.mark.omnivid_sim(rps=2, retry_after_seconds=0.05, error_5xx_rate=0.1)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._simulator import Simulator

_ASYNCIO_ONLY = "the omnivid simulator runs on asyncio (aiohttp), not on this anyio backend"
DEFAULTS: dict[str, Any] = {"time_scale": 0.001, "seed": 1234, "allow_loopback_callbacks": True}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "omnivid_sim(**options): Simulator keyword arguments for the omnivid_sim fixture",
    )


def _backend_name(backend: object) -> str | None:
    if isinstance(backend, str):
        return backend
    if isinstance(backend, tuple | list) and backend:
        return str(backend[0])
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the non-asyncio variants (anyio's default trio run) of tests using omnivid_sim."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "omnivid_sim" not in getattr(item, "fixturenames", ()):
            continue
        backend = _backend_name(callspec.params.get("anyio_backend"))
        if backend not in (None, "asyncio"):
            item.add_marker(pytest.mark.skip(reason=_ASYNCIO_ONLY))


@pytest.fixture
async def omnivid_sim(
    anyio_backend: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Simulator]:
    """A running omnivid provider simulator (fast time scale)."""
    if _backend_name(anyio_backend) != "asyncio":
        pytest.skip(_ASYNCIO_ONLY)
    options = dict(DEFAULTS)
    for marker in reversed(list(request.node.iter_markers("omnivid_sim"))):
        options.update(marker.kwargs)
    async with Simulator(**options) as sim:
        yield sim
