"""The baseline contenders: what a user would write with bare aiohttp instead of omnivid.

All of them speak APIMart's wire format directly (``POST {base}/v1/videos/generations``, then
``GET {base}/v1/tasks/{task_id}``, ``Authorization: Bearer KEY``) and keep only what their
benchmark needs:

* :func:`raw_throughput` (B1, B5): a semaphore of ``concurrency`` around "submit, then poll
  at once until terminal" (one poll for an instant task), one task per job.
* :func:`fixed_interval` (B2): submit, then poll every ``interval`` real seconds (the
  providers' advice is 5 s, scaled like the simulator's clock).
* :func:`semaphore_loop` (B3): ``concurrency`` workers (a semaphore's worth) submitting and
  polling with no rate limiter; each 429 is retried by the coroutine that got it, after the
  ``Retry-After`` it was given or, without one, a fixed ``fallback_wait``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiohttp
import anyio
from attrs import define

__all__ = [
    "JobTiming",
    "RawApimart",
    "RawCounts",
    "fixed_interval",
    "raw_throughput",
    "semaphore_loop",
    "session",
]

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class RawApimart:
    """The two APIMart calls over a bare ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.submit_url = base_url.rstrip("/") + "/v1/videos/generations"
        self.task_url = base_url.rstrip("/") + "/v1/tasks/"
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def submit(self, body: dict[str, Any]) -> tuple[int, str | None, float | None]:
        """POST a body: ``(HTTP status, task_id or None, Retry-After seconds or None)``."""
        async with self.session.post(self.submit_url, json=body, headers=self.headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                return resp.status, None, _retry_after(resp)
        return 200, str(data["data"][0]["task_id"]), None

    async def poll(self, task_id: str) -> tuple[int, str | None, float | None]:
        """GET a task: ``(HTTP status, task status or None, Retry-After seconds or None)``."""
        async with self.session.get(self.task_url + task_id, headers=self.headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                return resp.status, None, _retry_after(resp)
        return 200, str(data["data"]["status"]), None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def session(
    connections: int = 100, trace: Sequence[aiohttp.TraceConfig] = ()
) -> aiohttp.ClientSession:
    """A session with ``connections`` pooled connections (omnivid's default is 100)."""
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(connector=connector, trace_configs=list(trace) or None)


@define
class RawCounts:
    """What a raw contender did: jobs finished, their statuses, and HTTP requests sent."""

    completed: int = 0
    failed: int = 0
    requests: int = 0
    rate_limited: int = 0


async def raw_throughput(
    base_url: str,
    api_key: str,
    bodies: Iterable[dict[str, Any]],
    *,
    concurrency: int,
    connections: int = 100,
) -> RawCounts:
    """B1's raw-aiohttp loop: per job, under a semaphore, submit then poll until terminal."""
    counts = RawCounts()
    limit = anyio.Semaphore(concurrency)
    async with session(connections) as http:
        api = RawApimart(http, base_url, api_key)

        async def job(body: dict[str, Any]) -> None:
            async with limit:
                status, task_id, _ = await api.submit(body)
                counts.requests += 1
                if task_id is None:
                    counts.failed += 1
                    return
                while True:
                    status, task_status, _ = await api.poll(task_id)
                    counts.requests += 1
                    if status != 200:
                        counts.failed += 1
                        return
                    if task_status in TERMINAL:
                        break
                if task_status == "completed":
                    counts.completed += 1
                else:
                    counts.failed += 1

        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(job, body)
    return counts


@define
class JobTiming:
    """One B2 job: its key, when its submit was sent and answered, when the outcome arrived
    (all ``time.monotonic()``), the polls it took and its final status."""

    key: int
    sent: float = 0.0
    answered: float = 0.0
    done: float = 0.0
    polls: int = 0
    status: str = ""


async def fixed_interval(
    base_url: str,
    api_key: str,
    jobs: Sequence[tuple[int, dict[str, Any]]],
    *,
    interval: float,
    concurrency: int,
    trace: Sequence[aiohttp.TraceConfig] = (),
) -> list[JobTiming]:
    """B2's fixed-interval poller: submit, then sleep ``interval`` and poll, until terminal."""
    limit = anyio.Semaphore(concurrency)
    timings: list[JobTiming] = []
    async with session(trace=trace) as http:
        api = RawApimart(http, base_url, api_key)

        async def job(key: int, body: dict[str, Any]) -> None:
            async with limit:
                timing = JobTiming(key, sent=time.monotonic())
                _, task_id, _ = await api.submit(body)
                timing.answered = time.monotonic()
                if task_id is None:
                    timing.status = "not submitted"
                    timings.append(timing)
                    return
                while True:
                    await anyio.sleep(interval)
                    status, task_status, _ = await api.poll(task_id)
                    timing.polls += 1
                    if status == 200 and task_status in TERMINAL:
                        timing.done = time.monotonic()
                        timing.status = str(task_status)
                        break
                timings.append(timing)

        async with anyio.create_task_group() as tg:
            for key, body in jobs:
                tg.start_soon(job, key, body)
    return timings


async def semaphore_loop(
    base_url: str,
    api_key: str,
    bodies: Iterable[dict[str, Any]],
    *,
    concurrency: int,
    duration: float,
    poll_delay: float,
    fallback_wait: float = 1.0,
    trace: Sequence[aiohttp.TraceConfig] = (),
) -> RawCounts:
    """B3's semaphore-only loop, run for ``duration`` real seconds, then cancelled.

    Each of ``concurrency`` workers takes the next body, submits it (retrying 429s after their
    ``Retry-After`` or ``fallback_wait``), sleeps ``poll_delay`` and polls until terminal.
    """
    counts = RawCounts()
    source = iter(bodies)
    async with session(trace=trace) as http:
        api = RawApimart(http, base_url, api_key)

        async def until_ok(
            call: Callable[[Any], Awaitable[tuple[int, str | None, float | None]]], arg: Any
        ) -> str:
            while True:
                status, value, retry_after = await call(arg)
                counts.requests += 1
                if status == 429:
                    counts.rate_limited += 1
                    await anyio.sleep(fallback_wait if retry_after is None else retry_after)
                    continue
                if status != 200 or value is None:
                    raise RuntimeError(f"unexpected HTTP {status} from the simulator")
                return value

        async def worker() -> None:
            for body in source:
                task_id = await until_ok(api.submit, body)
                while True:
                    await anyio.sleep(poll_delay)
                    if await until_ok(api.poll, task_id) in TERMINAL:
                        break
                counts.completed += 1

        with anyio.move_on_after(duration):
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)
    return counts
