"""The download backlog of ``omnivid batch``: completed jobs whose videos are not saved yet.

A result URL lives for a while (APIMart's ``expires_at``, EvoLink's 24 hours), so a paid video
is lost if its download waits too long. :class:`DownloadQueue` keeps that from happening
while the batch runs:

* **Soonest-expiring first.** Waiting downloads sit in a heap ordered by their URLs' expiry
  (``Video.expires_at``, else completion + 24 hours; one with neither comes last), then by
  arrival.
* **Concurrency follows the backlog** (downloads waiting or running), between ``floor`` and
  ``ceiling``::

      at once = clamp(ceil(backlog / PER_WORKER), floor, ceiling)

  so 4 at once while it stays small, up to 16 as it grows, back down as it drains.
* **Submits are paced to downloads.** The batch asks :meth:`DownloadQueue.wait_room` before
  pulling each job from the batch file; it waits while the queue is *full*, which it becomes
  when the backlog reaches ``high`` or when draining it would take over a quarter of a URL's
  lifetime::

      drain = backlog x duration / max(running, 1)   (duration: a download's, averaged)
      full  when backlog >= high or drain > lifetime / 4
      room  again when backlog <= low and drain <= lifetime / 8

  ``lifetime`` is the shortest URL lifetime seen, in real seconds: ``(expires_at -
  completed_at) x time_scale`` of each fresh result. While it waits no job is taken, so no new
  task is submitted; tasks already running still end and join the backlog (about the
  in-flight limit more). :meth:`put` itself waits beyond ``2 x high`` (the batch then stops
  taking outcomes, and ``client.map``'s window stops its submits too), so the backlog is
  bounded whatever happens.

Nothing here sleeps: the queue wakes its dispatcher and its waiters when something changes,
and reads the time only to time downloads (``clock``, monotonic seconds).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.abc
from attrs import frozen

__all__ = ["PER_WORKER", "DownloadQueue", "Sample"]

T = TypeVar("T")

PER_WORKER = 4
"""Downloads in the backlog per download running at once (see the module docstring)."""
_SMOOTHING = 1 / 16  # weight of the newest download in the average duration
_SAMPLE_EVERY = 1.0
_MAX_SAMPLES = 1024  # then every other one is dropped and the interval doubles


@frozen
class Sample:
    """The backlog at one moment: ``at`` (seconds since the queue started), downloads
    ``waiting`` and ``running``, the ``target`` at once, and whether submits were held."""

    at: float
    waiting: int
    running: int
    target: int
    full: bool


class DownloadQueue(Generic[T]):
    """Downloads waiting (soonest-expiring first) and running; see the module docstring."""

    def __init__(
        self,
        *,
        floor: int = 4,
        ceiling: int = 16,
        high: int = 512,
        low: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"floor={floor}, ceiling={ceiling}: need 1 <= floor <= ceiling")
        self.floor = floor
        self.ceiling = ceiling
        self.high = max(1, high)
        self.low = self.high // 2 if low is None else low
        self.limit = 2 * self.high
        self._clock = clock
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self.running = 0
        self.target = floor
        self.lifetime = math.inf  # the shortest URL lifetime seen, real seconds
        self.duration: float | None = None  # a download's, averaged (clock seconds)
        self._full = False
        self._closed = False
        self._wake = anyio.Event()  # the dispatcher's
        self._room = anyio.Event()  # submits waiting for the backlog to shrink
        self._space = anyio.Event()  # put() waiting below `limit`
        self.started = clock()
        self.samples: list[Sample] = []
        self._sample_every = _SAMPLE_EVERY
        self.peak = 0  # the largest backlog seen
        self.peak_target = floor
        self.done = 0
        self.held = 0  # times submits were held

    # -- state -------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Downloads queued, not started."""
        return len(self._heap)

    @property
    def backlog(self) -> int:
        """Downloads waiting or running."""
        return len(self._heap) + self.running

    @property
    def full(self) -> bool:
        """True while submits should wait (see the module docstring)."""
        return self._full

    def drain_seconds(self) -> float:
        """How long the backlog would take to drain at the current pace (0 before the first
        download ends)."""
        if self.duration is None:
            return 0.0
        return self.backlog * self.duration / max(self.running, 1)

    # -- producers ---------------------------------------------------------------------------
    async def put(
        self, item: T, *, expires: float | None = None, lifetime: float | None = None
    ) -> None:
        """Queue ``item``: ``expires`` orders it (the URL's expiry, any one clock for all
        items; None: after every item that has one), ``lifetime`` (real seconds the URL lives
        from completion) tunes the pacing. Waits while ``2 x high`` downloads are waiting."""
        while len(self._heap) >= self.limit and not self._closed:
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()
        if lifetime is not None and lifetime > 0:
            self.lifetime = min(self.lifetime, lifetime)
        order = expires if expires is not None else math.inf
        heapq.heappush(self._heap, (order, next(self._order), item))
        self._changed()

    async def wait_room(self) -> None:
        """Wait while the queue is full (returns at once otherwise, without yielding)."""
        while self._full and not self._closed:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()

    def close(self) -> None:
        """No more items: :meth:`run` returns once the queued ones are done."""
        self._closed = True
        self._wake.set()
        self._room.set()
        self._space.set()

    # -- the dispatcher ----------------------------------------------------------------------
    async def run(self, save: Callable[[T], Awaitable[None]]) -> None:
        """Start ``save(item)`` for queued items, soonest-expiring first, at most ``target`` at
        once, until :meth:`close` and every item is done."""
        async with anyio.create_task_group() as tg:
            while True:
                while self._heap and self.running < self.target:
                    _, _, item = heapq.heappop(self._heap)
                    self.running += 1
                    tg.start_soon(self._one, save, item)
                    if len(self._heap) < self.limit:
                        self._space.set()
                if self._closed and not self._heap:
                    return  # the task group waits for the running ones
                if self._wake.is_set():
                    self._wake = anyio.Event()
                await self._wake.wait()

    async def _one(self, save: Callable[[T], Awaitable[None]], item: T) -> None:
        started = self._clock()
        try:
            await save(item)
        finally:
            took = self._clock() - started
            mean = self.duration
            self.duration = took if mean is None else mean + (took - mean) * _SMOOTHING
            self.running -= 1
            self.done += 1
            self._changed()

    # -- pacing ------------------------------------------------------------------------------
    def _changed(self) -> None:
        backlog = self.backlog
        self.target = min(self.ceiling, max(self.floor, -(-backlog // PER_WORKER)))
        self.peak = max(self.peak, backlog)
        self.peak_target = max(self.peak_target, self.target)
        drain = self.drain_seconds()
        if not self._full:
            if backlog >= self.high or drain > self.lifetime / 4:
                self._full = True
                self.held += 1
        elif backlog <= self.low and drain <= self.lifetime / 8:
            self._full = False
            self._room.set()
        self._wake.set()
        now = self._clock() - self.started
        samples = self.samples
        if not samples or now - samples[-1].at >= self._sample_every:
            samples.append(Sample(now, len(self._heap), self.running, self.target, self._full))
            if len(samples) >= _MAX_SAMPLES:  # a long run: keep its shape in constant memory
                del samples[1::2]
                self._sample_every *= 2
