"""``map_many`` on a PostgreSQL batch: several providers' accounts share one batch URL, on the
simulator (one pool and one worker name for all the accounts)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

import omnivid
from omnivid import VideoRequest
from omnivid.errors import ConfigurationError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

REFERENCE = "https://example.com/ref.png"


def jobs() -> list[tuple[str, VideoRequest]]:
    """Four APIMart jobs and four EvoLink ones, keyed apart."""
    apimart = [
        (f"a{i}", VideoRequest(model="gemini-omni-flash-preview", prompt=f"a {i}"))
        for i in range(4)
    ]
    evolink = [
        (
            f"e{i}",
            VideoRequest(
                model="gemini-omni-flash-reference-to-video", prompt=f"e {i}", images=[REFERENCE]
            ),
        )
        for i in range(4)
    ]
    return apimart + evolink


def clients(sim: Simulator) -> list[omnivid.AsyncClient]:
    """Unopened APIMart and EvoLink clients on ``sim``."""
    return [
        omnivid.AsyncClient(
            name, api_key=sim.api_key, base_url=sim.base_url(name), time_scale=0.001
        )
        for name in ("apimart", "evolink")
    ]


async def run(sim: Simulator, url: str, batch: str) -> dict[Any, omnivid.Outcome]:
    """One map_many of :func:`jobs` on the batch; its outcomes by key."""
    a, e = clients(sim)
    async with a, e, omnivid.map_many([a, e], jobs(), journal=url, batch=batch) as outcomes:
        return {o.key: o async for o in outcomes}


async def test_map_many_runs_every_provider_on_one_postgres_batch(
    sim: Simulator, db_url: str
) -> None:
    """Both providers' jobs run once each on the batch the URL names, and a rerun takes every
    outcome from it without a request."""
    batch = f"many-{secrets.token_hex(4)}"
    first = await run(sim, db_url, batch)
    assert sorted(first) == sorted(k for k, _ in jobs())
    assert all(o.ok and not o.from_journal for o in first.values())
    assert len(sim.stats.tasks) == 8
    again = await run(sim, db_url, batch)
    assert all(o.ok and o.from_journal for o in again.values()) and len(again) == 8
    assert len(sim.stats.tasks) == 8


async def test_a_batch_name_without_a_journal_is_refused(sim: Simulator) -> None:
    """batch= alone names nothing to share: a ConfigurationError before anything runs."""
    a, e = clients(sim)
    with pytest.raises(ConfigurationError, match="batch='x'"):
        omnivid.map_many([a, e], jobs(), batch="x")


async def test_a_postgres_url_without_a_batch_name_is_refused(sim: Simulator, db_url: str) -> None:
    """journal='postgresql://...' without batch=: a ConfigurationError asking for the name,
    and no request sent."""
    a, e = clients(sim)
    async with a, e:
        with pytest.raises(ConfigurationError, match="batch=NAME"):
            async with omnivid.map_many([a, e], jobs(), journal=db_url):
                pass
    assert sim.request_log == []


async def test_a_cap_on_a_shared_batch_of_several_providers_is_refused(
    sim: Simulator, db_url: str
) -> None:
    """One batch has one budget: capping APIMart (currency) and EvoLink (credits) on it would
    add the two units up, so max_cost is refused before anything runs."""
    a, e = clients(sim)
    with pytest.raises(ConfigurationError, match="bill in different units"):
        omnivid.map_many([a, e], jobs(), journal=db_url, batch="capped", max_cost=5.0)
