"""The batch's clockwork: one schedule of due times and a pool of reusable workers.

:class:`Schedule` is a heap of ``(due, seq, action, job, gen)`` entries run by a single task
(the *poller*): it sleeps until the earliest due time (or until an earlier entry arrives) and
hands each due entry to ``fire``. Every push bumps the job's generation, so an entry that a
later push superseded (a nudge, a reschedule) is skipped when it comes up: O(log n) per
schedule, nothing scanned. ``RELEASE`` entries carry no job (a slot to give back later).

:class:`Workers` runs job steps: an idle worker takes the next step, else a new worker task is
started; at most ``max_parked`` idle workers wait for work, the others end. Waiting tasks
therefore cost a heap entry, not a coroutine each. A batch holds about as many workers as it
has steps running at once (``max_in_flight``), so with the default ``max_parked`` a new job's
submit almost always goes to an idle worker instead of a new task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .._aio.waiters import waiter, wake
from ._job import Job

__all__ = ["POLL", "RELEASE", "SUBMIT", "Schedule", "Step", "Workers"]

POLL, SUBMIT, RELEASE = 0, 1, 2
Step = Callable[[Job], Awaitable[Any]]


class Schedule:
    """Due times for polls, resubmits and delayed slot releases (see the module docstring)."""

    def __init__(self, fire: Callable[[int, Job | None], None]) -> None:
        self._fire = fire
        self._heap: list[tuple[float, int, int, Job | None, int]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._sleep_until = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, action: int, job: Job) -> None:
        """Do ``action`` for ``job`` at ``due``, superseding its earlier entries."""
        job.gen += 1
        self._add((due, next(self._seq), action, job, job.gen))

    def push_release(self, due: float) -> None:
        """Give a slot back at ``due``."""
        self._add((due, next(self._seq), RELEASE, None, 0))

    async def run(self) -> None:
        """Fire entries as they fall due, forever (cancel to stop)."""
        heap = self._heap
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                _, _, action, job, gen = heapq.heappop(heap)
                if job is None or gen == job.gen:
                    self._fire(action, job)
            timeout = heap[0][0] - now if heap else math.inf
            self._sleep_until = now + timeout
            if self._wake.is_set():
                self._wake = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._wake.wait()
            self._sleep_until = -math.inf

    def _add(self, entry: tuple[float, int, int, Job | None, int]) -> None:
        heapq.heappush(self._heap, entry)
        if entry[0] < self._sleep_until:
            self._wake.set()


class Workers:
    """Reusable worker tasks for job steps (see the module docstring)."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        run_step: Callable[[Step, Job], Awaitable[None]],
        *,
        max_parked: int = 256,
    ) -> None:
        self._tg = task_group
        self._run_step = run_step
        self._max_parked = max_parked
        self._ready: deque[tuple[Step, Job]] = deque()
        self._parked: list[asyncio.Future[None]] = []

    def dispatch(self, step: Step, job: Job) -> None:
        """Run ``step(job)`` soon, in an idle worker if there is one."""
        self._ready.append((step, job))
        parked = self._parked
        while parked:
            if wake(parked.pop()):  # (a cancelled worker is skipped)
                return
        self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        ready, parked = self._ready, self._parked
        while True:
            while ready:
                step, job = ready.popleft()
                await self._run_step(step, job)
            if len(parked) >= self._max_parked:
                return  # enough idle workers already
            woken = waiter()  # cancelling the task group cancels this await as usual
            parked.append(woken)
            await woken
