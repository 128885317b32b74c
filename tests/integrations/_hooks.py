"""Helpers for the callback-receiver tests: requests, a real aiohttp server, a served receiver."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web

from omnivid import AsyncClient, PollPolicy, VideoRequest
from omnivid.integrations import CallbackReceiver
from omnivid.testing import EVOLINK_MODEL, Simulator

SCALE = 0.001
"""Real seconds per simulated second, for the simulator and the clients alike."""

NEVER_POLL = PollPolicy(floor=1e5, min_interval=1e5, max_interval=1e5)
"""A fallback poll so slow (100 real seconds at SCALE) that any quick result came by callback."""


def evolink_request(prompt: str = "a red fox in fresh snow [[duration=3]]") -> VideoRequest:
    """A valid EvoLink request; the default finishes in 3 simulated seconds."""
    return VideoRequest(
        model=EVOLINK_MODEL, prompt=prompt, images=("https://example.com/fox.png",), duration=5
    )


def bound_socket() -> socket.socket:
    """A listening loopback socket on a free port (known before the app is built)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve(app: web.Application, sock: socket.socket) -> AsyncIterator[str]:
    """Run ``app`` on ``sock``; yields its root URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@attrs.define
class Hook:
    """A receiver served by a real aiohttp server, and a way to make clients using it."""

    sim: Simulator
    receiver: CallbackReceiver
    root: str

    def client(self, **options: Any) -> AsyncClient:
        settings: dict[str, Any] = {
            "base_url": self.sim.base_url("evolink"),
            "api_key": self.sim.api_key,
            "time_scale": SCALE,
            "allow_private_callbacks": True,
            "callbacks": self.receiver,
        }
        settings.update(options)
        return AsyncClient("evolink", **settings)

    async def post(self, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST a hand-made callback to the receiver over HTTP."""
        client = self.receiver.client
        assert client is not None
        url = f"{self.receiver.public_url}/{token}"
        async with client.session.post(url, data=body) as resp:
            return resp.status, await resp.json()

    def spy_tokens(self) -> list[str]:
        """Record every token the receiver hands out from now on."""
        tokens: list[str] = []
        original = self.receiver.prepare

        def prepare(fingerprint: str, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
            token, out = original(fingerprint, body)
            if token is not None:
                tokens.append(token)
            return token, out

        self.receiver.prepare = prepare  # type: ignore[method-assign]
        return tokens
