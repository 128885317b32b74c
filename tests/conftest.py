"""Fixtures shared by every test folder: the anyio backend, a fast simulator, clients on it.

``sim`` is an in-process :class:`omnivid.testing.Simulator` running 1000x faster than real time
(``SIM_TIME_SCALE``); ``apimart`` and ``evolink`` are open :class:`omnivid.AsyncClient` objects
pointed at it, with the same time scale and a retry policy whose back-off waits are
milliseconds, so no test sleeps real seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from wirehelp import clock, recorder, scripted, seed  # fixtures for the core and http tests

import omnivid

if TYPE_CHECKING:
    from omnivid.testing import Simulator

__all__ = ["clock", "recorder", "scripted", "seed"]

SIM_TIME_SCALE = 0.001
"""Real seconds per simulated second, for the simulator and the clients alike."""

SIM_SEED = 1234


def fast_retry(**changes: Any) -> omnivid.RetryPolicy:
    """A retry policy with millisecond back-off (server ``Retry-After`` still honoured)."""
    settings: dict[str, Any] = {"base_delay": 0.001, "max_delay": 0.01, "retry_after_cap": 2.0}
    settings.update(changes)
    return omnivid.RetryPolicy(**settings)


def sim_client(sim: Simulator, provider: str, **options: Any) -> omnivid.AsyncClient:
    """An (unopened) client for ``provider`` on ``sim``; ``options`` override the defaults."""
    settings: dict[str, Any] = {
        "api_key": sim.api_key,
        "base_url": sim.base_url(provider),
        "retry": fast_retry(),
        "time_scale": SIM_TIME_SCALE,
        "slow_start": False,  # these tests time their first requests
        "allow_private_callbacks": True,
    }
    settings.update(options)
    return omnivid.AsyncClient(provider, **settings)


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the simulator and aiohttp need it)."""
    return "asyncio"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Extra ``Simulator`` keyword arguments; override this fixture to change them."""
    return {}


@pytest.fixture
async def sim(sim_options: dict[str, Any]) -> AsyncIterator[Simulator]:
    """A running simulator of both providers, 1000x faster than real time."""
    from omnivid.testing import Simulator

    options: dict[str, Any] = {
        "time_scale": SIM_TIME_SCALE,
        "seed": SIM_SEED,
        "allow_loopback_callbacks": True,
        "retry_after_seconds": 0.05,
    }
    options.update(sim_options)
    async with Simulator(**options) as simulator:
        yield simulator


@pytest.fixture
def make_client(sim: Simulator) -> Callable[..., omnivid.AsyncClient]:
    """A factory of (unopened) clients on ``sim``: ``make_client("evolink", retry=...)``."""
    return lambda provider, **options: sim_client(sim, provider, **options)


@pytest.fixture
async def apimart(sim: Simulator) -> AsyncIterator[omnivid.AsyncClient]:
    """An open APIMart client on the simulator."""
    async with sim_client(sim, "apimart") as client:
        yield client


@pytest.fixture
async def evolink(sim: Simulator) -> AsyncIterator[omnivid.AsyncClient]:
    """An open EvoLink client on the simulator."""
    async with sim_client(sim, "evolink") as client:
        yield client
