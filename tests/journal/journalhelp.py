"""Helpers for the journal tests: clients on the simulator and requests."""

from __future__ import annotations

from typing import Any

import omnivid
from omnivid import VideoRequest
from omnivid.testing import Simulator

GEMINI = "gemini-omni-flash-preview"


def client(sim: Simulator, provider: str = "apimart", **options: Any) -> omnivid.AsyncClient:
    """An unopened client on ``sim``: its time scale, millisecond retries."""
    settings: dict[str, Any] = {
        "api_key": sim.api_key,
        "base_url": sim.base_url(provider),
        "retry": omnivid.RetryPolicy(base_delay=0.001, max_delay=0.005, retry_after_cap=2.0),
        "time_scale": 0.001,
        "slow_start": False,  # these tests time their first requests
    }
    settings.update(options)
    return omnivid.AsyncClient(provider, **settings)


def gemini(i: int | str, marker: str = "") -> VideoRequest:
    """A distinct gemini-omni-flash-preview request."""
    return VideoRequest(model=GEMINI, prompt=f"job {i} {marker}".strip())


def jobs(n: int, marker: str = "") -> list[tuple[str, VideoRequest]]:
    """``n`` keyed jobs ``k0``, ``k1``..."""
    return [(f"k{i}", gemini(i, marker)) for i in range(n)]


async def run(sim: Simulator, items: Any, **options: Any) -> dict[Any, omnivid.Outcome]:
    """Run a map to completion; its outcomes by key."""
    async with client(sim) as c, c.map(items, **options) as outcomes:
        return {o.key: o async for o in outcomes}
