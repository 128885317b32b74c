"""Bare asyncio futures as one-shot wake-ups for the scheduler and the journal's group commit.

On asyncio (omnivid's only backend, as aiohttp's) a future is the cheapest thing a task can
wait on: ``anyio.Event`` wraps an ``asyncio.Event``, which wraps a future per waiter, and
looks the backend up when created. Each waiter gets its own future, because cancelling a task
cancels the future it awaits: a shared one would cancel every waiter. A cancelled waiter's
future is therefore done already, and :func:`wake` skips it.
"""

from __future__ import annotations

import asyncio

__all__ = ["waiter", "wake"]


def waiter() -> asyncio.Future[None]:
    """A new future for one task to wait on (``await`` it), on the running loop."""
    return asyncio.get_running_loop().create_future()


def wake(future: asyncio.Future[None]) -> bool:
    """Wake the task waiting on ``future``; False (and nothing done) if it was cancelled."""
    if future.done():
        return False
    future.set_result(None)
    return True
