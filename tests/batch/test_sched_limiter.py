"""The scheduler's resizable FIFO limiter."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from omnivid.batch._limiter import Limiter

pytestmark = pytest.mark.anyio


async def test_waits_when_full_and_serves_in_order() -> None:
    """Units are handed out first come, first served."""
    limiter = Limiter(1)
    await limiter.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(take, i)
            await anyio.lowlevel.checkpoint()
        assert limiter.waiting == 3
        for _ in range(3):
            limiter.release()
            await anyio.lowlevel.checkpoint()
    assert order == [0, 1, 2]


async def test_raising_capacity_wakes_waiters() -> None:
    """A larger capacity lets waiting tasks through at once."""
    limiter = Limiter(1)
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        tg.start_soon(limiter.acquire)
        await anyio.lowlevel.checkpoint()
        limiter.capacity = 3
    assert limiter.used == 3 and limiter.waiting == 0


async def test_a_cancelled_waiter_does_not_leak_a_unit() -> None:
    """Cancelling a waiter (even one just granted a unit) leaves the count right."""
    limiter = Limiter(1)
    await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.used == 0 and limiter.try_acquire()


async def test_a_waiter_granted_then_cancelled_hands_its_unit_on() -> None:
    """A waiter cancelled after release() granted it a unit passes that unit to the next."""
    limiter = Limiter(1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await anyio.lowlevel.checkpoint()
    limiter.release()  # granted to the first waiter...
    first.cancel()  # ...which is cancelled before it runs
    with anyio.fail_after(1):
        await second
    assert first.cancelled() and limiter.used == 1 and limiter.waiting == 0


async def test_release_skips_a_waiter_cancelled_in_the_same_turn() -> None:
    """A release right after a waiter's cancellation skips it and grants the next waiter."""
    limiter = Limiter(1)
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def waiter(scope: anyio.CancelScope) -> None:
            with scope:
                await limiter.acquire()

        tg.start_soon(waiter, first)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(waiter, anyio.CancelScope())
        await anyio.lowlevel.checkpoint()
        first.cancel()  # its wait is cancelled; it has not run its clean-up yet
        limiter.release()
    assert limiter.used == 1 and limiter.waiting == 0


def test_bad_capacity_and_over_release() -> None:
    """Capacity must be >= 1; releasing more than acquired is an error."""
    with pytest.raises(ValueError, match="capacity"):
        Limiter(0)
    limiter = Limiter(2)
    with pytest.raises(RuntimeError, match="released"):
        limiter.release()
