"""Helpers for the scheduler tests: clients on the simulator, requests, an in-memory provider."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import anyio

import omnivid
from omnivid import Task, TaskError, TaskStatus, VideoRequest
from omnivid.testing import Simulator

SCALE = 0.001
"""Real seconds per simulated second (as tests/conftest.py's simulator)."""

GEMINI = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
EVO = "gemini-omni-flash-reference-to-video"
IMAGE = "https://example.com/cat.png"


def fast_retry(**changes: Any) -> omnivid.RetryPolicy:
    """Millisecond back-off (a server's Retry-After is still honoured)."""
    settings: dict[str, Any] = {"base_delay": 0.001, "max_delay": 0.005, "retry_after_cap": 2.0}
    settings.update(changes)
    return omnivid.RetryPolicy(**settings)


def client(sim: Simulator, provider: str = "apimart", **options: Any) -> omnivid.AsyncClient:
    """An unopened client on ``sim`` with its time scale and fast retries."""
    settings: dict[str, Any] = {
        "api_key": sim.api_key,
        "base_url": sim.base_url(provider),
        "retry": fast_retry(),
        "time_scale": SCALE,
        "slow_start": False,  # these tests time their first requests
        "allow_private_callbacks": True,
    }
    settings.update(options)
    return omnivid.AsyncClient(provider, **settings)


def gemini(i: int | str, marker: str = "") -> VideoRequest:
    """A distinct gemini-omni-flash-preview request (30-50 simulated s, cost 1.0)."""
    return VideoRequest(model=GEMINI, prompt=f"job {i} {marker}".strip())


def ext(i: int | str, marker: str = "") -> VideoRequest:
    """A distinct Omni-Flash-Ext request (cost 0.4)."""
    return VideoRequest(model=EXT, prompt=f"job {i} {marker}".strip(), duration=6)


def evo(i: int | str, marker: str = "") -> VideoRequest:
    """A distinct EvoLink request (credits)."""
    return VideoRequest(model=EVO, prompt=f"job {i} {marker}".strip(), images=(IMAGE,), duration=5)


async def collect(outcomes: Any) -> list[omnivid.Outcome]:
    """Every outcome of an async iterator."""
    return [o async for o in outcomes]


class Counting:
    """A generator of requests that counts how many were pulled."""

    def __init__(self, n: int, make: Callable[[int], VideoRequest] = gemini) -> None:
        self.n = n
        self.make = make
        self.pulled = 0

    def __iter__(self) -> Iterator[VideoRequest]:
        for i in range(self.n):
            self.pulled += 1
            yield self.make(i)


class FakeApi:
    """An in-memory provider behind a real client: ``submit`` and the transport's task reads
    are replaced (``read_task`` answers without a response text: the journal keeps the tasks'
    cattrs form).

    Tasks end ``duration`` seconds (client clock) after their submit; ``fail`` decides from the
    request whether a task fails (its TaskError message then names the cause).
    """

    def __init__(
        self,
        client: omnivid.AsyncClient,
        *,
        duration: float = 0.0,
        fail: Callable[[VideoRequest], str | None] = lambda request: None,
    ) -> None:
        self.duration = duration
        self.fail = fail
        self.ids = itertools.count()
        self.tasks: dict[str, tuple[float, VideoRequest]] = {}
        self.submits = 0
        self.polls = 0
        self.max_in_flight = 0
        client.submit = self.submit  # type: ignore[method-assign]
        client.transport.get_task = self.get_task  # type: ignore[method-assign]
        client.transport.read_task = self.read_task  # type: ignore[method-assign]

    def in_flight(self) -> int:
        now = anyio.current_time()
        return sum(1 for end, _ in self.tasks.values() if end > now)

    async def submit(self, request: VideoRequest, *, body: Any = None) -> Task:
        await anyio.lowlevel.checkpoint()
        self.submits += 1
        task_id = f"fake-{next(self.ids)}"
        self.tasks[task_id] = (anyio.current_time() + self.duration, request)
        if self.duration:  # (instant tasks are never in flight for long: skip the count)
            self.max_in_flight = max(self.max_in_flight, self.in_flight())
        return Task(id=task_id, provider="apimart", model=request.model)

    async def read_task(self, task_id: str, *, model: str | None = None) -> tuple[Task, None]:
        return await self.get_task(task_id, model=model), None

    async def get_task(self, task_id: str, *, model: str | None = None) -> Task:
        await anyio.lowlevel.checkpoint()
        self.polls += 1
        end, request = self.tasks[task_id]
        if anyio.current_time() < end:
            return Task(id=task_id, provider="apimart", model=model, status=TaskStatus.PROCESSING)
        cause = self.fail(request)
        if cause is not None:
            return Task(
                id=task_id,
                provider="apimart",
                model=model,
                status=TaskStatus.FAILED,
                cost=0.0,
                error=TaskError("task_failed", cause),
            )
        return Task(
            id=task_id,
            provider="apimart",
            model=model,
            status=TaskStatus.COMPLETED,
            progress=100,
            cost=1.0,
        )


IMMEDIATE = omnivid.PollPolicy(floor=0.0, first_fraction=0.0, min_interval=0.0, jitter=0.0)
"""Poll as soon as a submit is answered (for instant tasks)."""
