"""Fixtures for the callback-receiver tests: a fast simulator and a real aiohttp receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _hooks import NEVER_POLL, SCALE, Hook, bound_socket, serve
from aiohttp import web

from omnivid.integrations import CallbackReceiver
from omnivid.integrations.aiohttp import callback_app
from omnivid.testing import Simulator


@pytest.fixture
def anyio_backend() -> str:
    """The simulator and aiohttp need asyncio."""
    return "asyncio"


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A simulator 1000x faster than real time, accepting loopback callbacks."""
    async with Simulator(time_scale=SCALE, seed=7, allow_loopback_callbacks=True) as server:
        yield server


@pytest.fixture
def make_hook(sim: Simulator) -> Callable[..., Any]:
    """``async with make_hook(**receiver_options) as hook``: a served receiver."""

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[Hook]:
        options.setdefault("fallback_poll", NEVER_POLL)
        sock = bound_socket()
        port = sock.getsockname()[1]
        receiver = CallbackReceiver(f"http://127.0.0.1:{port}/omnivid/callbacks", **options)
        app = web.Application()
        app.add_subapp("/omnivid/callbacks/", callback_app(receiver))
        async with serve(app, sock) as root:
            yield Hook(sim, receiver, root)

    return make
