"""An endpoint no request has ever reached (connection refused, here a closed loopback port):
back-offs shortened by the client's ``time_scale``, and given up on about 30 provider seconds
after the first failure, with an ``EndpointUnreachableError`` naming the URL."""

from __future__ import annotations

import re
import socket
import time

import anyio
import pytest
from aiohttp import web

import omnivid
from omnivid import errors

pytestmark = pytest.mark.anyio

SCALE = 0.001


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_client(**options: object) -> omnivid.AsyncClient:
    """A client on a closed port, with the default retry policy unless told otherwise (and no
    rate limit: the gate's slow start would space the tries, not the back-offs)."""
    settings: dict[str, object] = {
        "api_key": "sk-unreachable-key",
        "base_url": f"http://127.0.0.1:{closed_port()}",
        "time_scale": SCALE,
        "adaptive_rate": False,
    }
    settings.update(options)
    return omnivid.AsyncClient("apimart", **settings)  # type: ignore[arg-type]


async def test_connection_backoffs_scale_with_time_scale() -> None:
    """The default policy's 4 back-offs (up to 7.5 s) take milliseconds at time_scale=0.001."""
    async with unreachable_client() as client:
        started = time.monotonic()
        with anyio.fail_after(2), pytest.raises(errors.TransportError) as caught:
            await client.submit(omnivid.VideoRequest(model="gemini-omni-flash-preview", prompt="x"))
        elapsed = time.monotonic() - started
        assert client.statistics()["retries"] == 4
    assert elapsed < 1.0
    text = str(caught.value)
    assert "cannot connect to apimart at http://127.0.0.1:" in text
    assert "sk-unreachable-key" not in text


async def test_a_never_reached_endpoint_is_given_up_on_at_its_deadline() -> None:
    """Reads that would retry 1000 times stop at the 30 ms deadline, naming the URL."""
    retry = omnivid.RetryPolicy(max_retries=1000)
    async with unreachable_client(retry=retry) as client:
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(errors.EndpointUnreachableError) as caught:
            await client.get("task_1")
        elapsed = time.monotonic() - started
        retries = client.statistics()["retries"]
    assert 30 * SCALE <= elapsed < 2.0
    assert retries < 1000
    assert caught.value.url.startswith("http://127.0.0.1:")
    assert caught.value.url in str(caught.value)
    assert re.search(r"no request has reached it in \d+ s", str(caught.value))


async def test_an_endpoint_reached_once_is_not_given_up_on_early() -> None:
    """After one answer, refused connections are retried as an outage, not given up on."""

    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({}, status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", not_found)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    retry = omnivid.RetryPolicy(max_retries=3, base_delay=40.0, max_delay=40.0)  # 40 ms each
    async with unreachable_client(base_url=base_url, retry=retry) as client:
        with pytest.raises(errors.NotFoundError):
            await client.get("task_1")
        await runner.cleanup()  # from now on, connections are refused
        with anyio.fail_after(5), pytest.raises(errors.TransportError) as caught:
            await client.get("task_1")
        assert client.statistics()["retries"] == 3
        assert client.transport.unreachable_deadline() is None
    assert not isinstance(caught.value, errors.EndpointUnreachableError)
