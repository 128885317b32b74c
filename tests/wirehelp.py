"""Wire helpers for the core and HTTP tests: seed payloads, an HTTP recorder, a scripted server.

* ``seed(name)`` loads ``tests/fixtures/seeds/NAME`` (the documents' example payloads).
* ``recorder`` is an aiohttp session whose every request start is recorded (method, URL,
  headers), to pass to ``AsyncClient(session=...)``; it proves when no request was sent.
* ``scripted`` is a loopback aiohttp server answering from a queue of canned replies, for
  wire conditions the simulator does not produce (an HTTP-date ``Retry-After`` in the past, a
  non-JSON 4xx body, a read timeout on demand).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web

from omnivid._aio import clock as _clock

SEEDS = Path(__file__).resolve().parent / "fixtures" / "seeds"


@pytest.fixture
def seed() -> Callable[[str], Any]:
    """Load a seed payload by file name."""

    def load(name: str) -> Any:
        return json.loads((SEEDS / name).read_text(encoding="utf-8"))

    return load


@attrs.frozen
class Sent:
    """One request as aiohttp started it."""

    method: str
    url: str
    headers: dict[str, str]


class Recorder:
    """An aiohttp session plus the list of every request it started."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_start)
        self.session = aiohttp.ClientSession(trace_configs=[trace])

    async def _on_start(
        self, session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        self.sent.append(Sent(params.method, str(params.url), dict(params.headers)))

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Requests sent, optionally only of ``method`` and with ``contains`` in the URL."""
        return sum(
            1 for s in self.sent if (method is None or s.method == method) and contains in s.url
        )


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    """A recording aiohttp session (closed after the test)."""
    rec = Recorder()
    try:
        yield rec
    finally:
        await rec.session.close()


@attrs.define
class Reply:
    """A canned answer: status, body text, headers, an optional delay or a dropped connection."""

    status: int = 200
    body: str | dict[str, Any] | list[Any] = ""
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0
    drop: bool = False


class Scripted:
    """A loopback server answering each request with the next queued ``Reply``."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default = Reply(404, {"error": {"code": "not_scripted", "message": "no reply"}})
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self.replies.extend(replies)

    def count(self, method: str) -> int:
        """How many ``method`` requests arrived."""
        return sum(1 for m, _, _ in self.requests if m == method)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay:
            await anyio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        headers = {"Content-Type": "application/json", **reply.headers}
        return web.Response(status=reply.status, text=body, headers=headers)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """A running scripted server; ``scripted.url`` is its base URL."""
    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


class Clock:
    """A settable stand-in for omnivid's loop clock; tests move ``now`` by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze omnivid's loop clock (``omnivid._aio.clock.now``) at 1000 s, for the gate's
    synchronous bookkeeping."""
    c = Clock()
    monkeypatch.setattr(_clock, "now", c)
    return c
