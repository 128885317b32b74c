"""A counting limiter for the scheduler: cheap when free, fair (FIFO) when full, resizable.

Unlike ``anyio.Semaphore`` it does not yield to the event loop when a unit is free, which keeps
the scheduler's per-job overhead low, and its ``capacity`` can change while tasks wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from .._aio.waiters import waiter, wake

__all__ = ["Limiter"]


class Limiter:
    """``capacity`` units; :meth:`acquire` waits (first come, first served) for a free one."""

    __slots__ = ("_capacity", "_waiters", "used")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity}: must be 1 or more")
        self._capacity = capacity
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()  # see omnivid._aio.waiters

    def __repr__(self) -> str:
        return f"<Limiter {self.used}/{self._capacity} waiting={len(self._waiters)}>"

    @property
    def capacity(self) -> int:
        """Units in all; raising it wakes waiters at once, lowering it takes effect as units
        are released."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"capacity={value}: must be 1 or more")
        self._capacity = value
        self._grant()

    @property
    def waiting(self) -> int:
        """Tasks waiting for a unit."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a unit if one is free now."""
        if self.used < self._capacity and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a unit, waiting for one if none is free."""
        if self.try_acquire():
            return
        granted = waiter()
        self._waiters.append(granted)
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():
                self.release()  # granted while being cancelled: hand the unit on
            else:
                with contextlib.suppress(ValueError):  # _grant may have dropped it already
                    self._waiters.remove(granted)
            raise

    def take(self) -> None:
        """Take a unit now, even past ``capacity`` (a unit given back earlier is owed again:
        a job that waited outside the window is delivered)."""
        self.used += 1

    def release(self) -> None:
        """Give a unit back."""
        if self.used <= 0:
            raise RuntimeError("Limiter released more often than acquired")
        self.used -= 1
        self._grant()

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters and self.used < self._capacity:
            if wake(waiters.popleft()):  # (a waiter cancelled meanwhile is skipped)
                self.used += 1
