"""Callback delivery: the POST of a finished task's body to the ``callback_url`` it was given.

`Callbacks` owns the HTTP session the simulator sends callbacks with (opened and closed with the
server), starts one delivery per finished task that asked for one, and counts the deliveries in
progress so that ``Simulator.wait_idle`` can wait for them. A delivery sends the EvoLink task
body, as seen when it starts, and retries after each of ``callback_retry_delays`` (simulated
seconds) until an answer is 2xx; every attempt, failed or not, is recorded in
``SimStats.callbacks``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import anyio
from anyio.abc import TaskGroup

from ._state import SimState, SimTask
from ._stats import CallbackAttempt
from ._wire import evolink_task

_MIN_CALLBACK_TIMEOUT = 0.5


class Callbacks:
    """Callback deliveries on the simulator's shared state; ``urls(task)``: its file URLs."""

    def __init__(self, state: SimState, *, urls: Callable[[SimTask], tuple[str, ...]]) -> None:
        self._state = state
        self._urls = urls
        self._session: aiohttp.ClientSession | None = None
        self._pending = 0
        self._done = anyio.Event()

    def open(self) -> None:
        """Open the session callbacks are sent with (deliveries start only while it is open)."""
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the session (after the task group running the deliveries is closed)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start(self, tg: TaskGroup, task: SimTask) -> None:
        """Deliver the callback of ``task``, which has just ended, in ``tg`` (if open)."""
        if self._session is not None:
            self._pending += 1
            tg.start_soon(self._deliver_tracked, self._session, task)

    async def wait(self) -> None:
        """Wait until no delivery (retries included) is in progress."""
        while self._pending:
            await self._done.wait()

    async def _deliver_tracked(self, session: aiohttp.ClientSession, task: SimTask) -> None:
        try:
            await self._deliver(session, task)
        finally:
            self._pending -= 1
            if not self._pending:
                self._done.set()
                self._done = anyio.Event()

    async def _deliver(self, session: aiohttp.ClientSession, task: SimTask) -> None:
        """POST the task body to its callback URL; retry after 1, 2, 4 s (scaled) on failure."""
        assert task.callback_url is not None
        state = self._state
        body = evolink_task(task.view(state.clock.now(), self._urls(task)))
        timeout = aiohttp.ClientTimeout(
            total=max(
                _MIN_CALLBACK_TIMEOUT, state.clock.real_seconds(state.config.callback_timeout)
            )
        )
        for delay in (0.0, *state.config.callback_retry_delays):
            if delay:
                await asyncio.sleep(state.clock.real_seconds(delay))
            started = time.monotonic()
            result: int | str
            try:
                async with session.post(task.callback_url, json=body, timeout=timeout) as resp:
                    result = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                result = f"{type(exc).__name__}: {exc}"
            state.stats.callbacks.append(CallbackAttempt(task.callback_url, result, started))
            if isinstance(result, int) and 200 <= result < 300:
                return
