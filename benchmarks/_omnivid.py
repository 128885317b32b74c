"""The omnivid contenders: ``AsyncClient.map`` over the same jobs the baselines run.

``IMMEDIATE`` is the poll policy for instant tasks in the throughput benchmarks (B1, B4, B5): the
first poll goes out as soon as the submit is answered, exactly like the raw loop's, so the two
contenders do the same HTTP work and the comparison measures per-job overhead only.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any

import aiohttp
import anyio
from attrs import define

import omnivid
from omnivid._http.gate import AccountGate, RatePolicy

from ._baselines import RawCounts, session

__all__ = ["IMMEDIATE", "MapTimings", "omnivid_map", "omnivid_throughput", "with_policy"]

IMMEDIATE = omnivid.PollPolicy(floor=0.0, first_fraction=0.0, min_interval=0.0, jitter=0.0)
Job = tuple[int, omnivid.VideoRequest]


async def omnivid_throughput(
    base_url: str,
    api_key: str,
    requests: Iterable[omnivid.VideoRequest],
    *,
    max_in_flight: int,
    journal: str | os.PathLike[str] | None = None,
) -> RawCounts:
    """Run ``requests`` through ``client.map`` polling at once; count the outcomes."""
    counts = RawCounts()
    async with (
        omnivid.AsyncClient(
            "apimart", base_url=base_url, api_key=api_key, poll=IMMEDIATE
        ) as client,
        client.map(requests, max_in_flight=max_in_flight, journal=journal) as outcomes,
    ):
        async for outcome in outcomes:
            if outcome.ok:
                counts.completed += 1
            else:
                counts.failed += 1
    return counts


def with_policy(client: omnivid.AsyncClient, policy: RatePolicy) -> omnivid.AsyncClient:
    """``client`` (not yet opened) with a fresh gate of rate policy ``policy``."""
    client.gate = AccountGate(policy=policy, time_scale=client.time_scale)
    return client


@define
class MapTimings:
    """Per key: when ``map`` yielded its outcome (``time.monotonic()``) and its task status."""

    done: dict[int, float]
    status: dict[int, str]
    statistics: dict[str, Any]


async def omnivid_map(
    base_url: str,
    api_key: str,
    jobs: Iterable[Job] | AsyncIterable[Job],
    *,
    max_in_flight: int,
    time_scale: float,
    trace: Sequence[aiohttp.TraceConfig] = (),
    stop_after: float | None = None,
    poll: omnivid.PollPolicy | None = None,
    policy: RatePolicy | None = None,
) -> MapTimings:
    """``client.map`` over ``(key, request)`` pairs with the default (scaled) poll policy.

    ``stop_after`` (real seconds) leaves the ``map`` block early, cancelling the rest.
    ``poll`` replaces the poll policy (the client's ``time_scale`` then stays 1); ``policy``
    the gate's rate policy.
    """
    timings = MapTimings({}, {}, {})
    async with session(trace=trace) as http:
        client = omnivid.AsyncClient(
            "apimart",
            base_url=base_url,
            api_key=api_key,
            session=http,
            time_scale=1.0 if poll else time_scale,
            poll=poll,
        )
        if policy is not None:
            with_policy(client, policy)
        async with client:
            with anyio.move_on_after(stop_after):
                async with client.map(jobs, max_in_flight=max_in_flight) as outcomes:
                    async for outcome in outcomes:
                        key = int(outcome.key)
                        timings.done[key] = time.monotonic()
                        timings.status[key] = _status(outcome)
                    timings.statistics = _stats_dict(outcomes.statistics())
    return timings


def _status(outcome: omnivid.Outcome) -> str:
    """``completed`` for a good outcome, else the error's class or the task's status."""
    if outcome.ok:
        return "completed"
    if outcome.error is not None:
        return type(outcome.error).__name__
    return outcome.task.status.value if outcome.task is not None else "unknown"


def _stats_dict(stats: Any) -> dict[str, Any]:
    import attrs

    if attrs.has(type(stats)):
        return dict(attrs.asdict(stats))
    return dict(stats)
