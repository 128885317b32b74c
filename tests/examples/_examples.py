"""Helpers for the example tests: loading the example modules, sockets, settings, polling."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
from aiohttp import web

from omnivid.testing import Simulator

SCALE = 0.001
"""Real seconds per simulated second, for the simulator and the apps alike."""

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FOX = {
    "model": "Omni-Flash-Ext",
    "prompt": "a red fox in fresh snow [[duration=5]]",
    "duration": 6,
}
EVOLINK_FOX = {
    "model": "gemini-omni-flash-reference-to-video",
    "prompt": "a red fox in fresh snow [[duration=5]]",
    "images": ["https://example.com/fox.png"],
    "duration": 5,
}


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (examples are scripts, not a package)."""
    module_name = f"omnivid_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def env_for(sim: Simulator, provider: str = "apimart", **extra: str) -> dict[str, str]:
    """The ``OMNIVID_*`` variables pointing an example app at ``sim``."""
    env = {
        "OMNIVID_PROVIDER": provider,
        "OMNIVID_BASE_URL": sim.base_url(provider),
        "OMNIVID_API_KEY": sim.api_key,
        "OMNIVID_TIME_SCALE": str(SCALE),
    }
    env.update(extra)
    return env


def bound_socket() -> socket.socket:
    """A listening loopback socket on a free port (known before the app is built)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Wait (in small real steps) until ``predicate()`` is true."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other components
            await anyio.sleep(0.005)


async def poll_json(get: Any, path: str, done: Any, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``path`` with ``get`` (returning (status, json)) until ``done(json)``."""
    with anyio.fail_after(timeout):
        while True:
            status, body = await get(path)
            assert status == 200, body
            if done(body):
                return dict(body)
            await anyio.sleep(0.01)


@asynccontextmanager
async def asgi_bridge(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` on ``sock`` through a small aiohttp server that forwards every
    request in-process (lets the simulator call back a FastAPI app without uvicorn)."""
    transport = httpx.ASGITransport(app=app)

    async def forward(request: web.Request) -> web.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.request(
                request.method,
                request.path_qs,
                content=await request.read(),
                headers={"content-type": request.headers.get("content-type", "")},
            )
        return web.Response(status=answer.status_code, body=answer.content)

    bridge = web.Application()
    bridge.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(bridge, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


class FileSpy:
    """Records every filesystem look-up (open, stat, exists, read) of a path containing
    ``marker``, through the calls a request could reach: ``open``, ``os.open``, ``os.stat``,
    ``os.lstat`` and ``pathlib.Path`` (``open``, ``read_bytes``, ``stat``, ``exists``)."""

    def __init__(self, monkeypatch: Any, marker: str) -> None:
        import builtins
        import os
        import pathlib

        self.calls: list[tuple[str, str]] = []
        self.marker = marker
        targets = [(builtins, "open"), (os, "open"), (os, "stat"), (os, "lstat")]
        targets += [(pathlib.Path, name) for name in ("open", "read_bytes", "stat", "exists")]
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self._wrap(name, getattr(owner, name)))

    def _wrap(self, name: str, real: Any) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            if any(self.marker in str(arg) for arg in args[:1]):
                self.calls.append((name, str(args[0])))
            return real(*args, **kwargs)

        return spy


def local_files(root: Path, marker: str) -> dict[str, str]:
    """An existing video file, a directory and a missing path, all named with ``marker``."""
    from omnivid.testing import video_bytes

    (root / f"{marker}.mp4").write_bytes(video_bytes("secret"))
    (root / f"{marker}-dir").mkdir()
    return {
        "file": str(root / f"{marker}.mp4"),
        "directory": str(root / f"{marker}-dir"),
        "missing": str(root / f"{marker}-missing.mp4"),
    }
