"""A 5xx's Retry-After (a 503 with a hint) is honoured like a 429's.

Neither provider documents a 503, so the simulator does not send one; these tests use a tiny
loopback server that answers the first poll with ``503`` and ``Retry-After``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

import omnivid
from omnivid import errors
from omnivid._http.retry import retry_hint
from omnivid.providers import get_provider

pytestmark = pytest.mark.anyio

HINT = 0.08


class Flaky:
    """APIMart's two endpoints; the first ``failures`` polls get 503 with ``Retry-After``."""

    def __init__(self, task: dict[str, Any], failures: int) -> None:
        self.task = task
        self.failures = failures
        self.polls: list[float] = []

    async def submit(self, request: web.Request) -> web.Response:
        body = {"code": 200, "data": [{"status": "submitted", "task_id": self.task["data"]["id"]}]}
        return web.json_response(body)

    async def poll(self, request: web.Request) -> web.Response:
        self.polls.append(time.monotonic())
        if len(self.polls) <= self.failures:
            error = {"error": {"code": "unavailable", "message": "busy", "type": "api_error"}}
            return web.Response(
                status=503,
                text=json.dumps(error),
                content_type="application/json",
                headers={"Retry-After": str(HINT)},
            )
        return web.json_response(self.task)


@pytest.fixture
async def flaky(seed: Callable[[str], Any]) -> AsyncIterator[tuple[Flaky, str]]:
    """A running flaky server and its APIMart base URL."""
    server = Flaky(seed("apimart_ext_task_completed.json"), failures=1)
    app = web.Application()
    app.router.add_post("/v1/videos/generations", server.submit)
    app.router.add_get("/v1/tasks/{task_id}", server.poll)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _client(base_url: str, *, max_retries: int) -> omnivid.AsyncClient:
    """Millisecond back-offs (so only a hint can make a retry wait), polls at once."""
    retry = omnivid.RetryPolicy(base_delay=0.001, max_delay=0.001, max_retries=max_retries)
    poll = omnivid.PollPolicy(floor=0.0, first_fraction=0.0, min_interval=0.0, jitter=0.0)
    return omnivid.AsyncClient(
        "apimart", base_url=base_url, api_key="sk-test", retry=retry, poll=poll
    )


def test_a_503_error_carries_its_retry_after() -> None:
    """The typed error of a 5xx keeps the server's hint; retry_hint reads it."""
    body = '{"error": {"code": "unavailable", "message": "busy", "type": "api_error"}}'
    error = get_provider("apimart").error_from_response(503, body, retry_after=2.5)
    assert isinstance(error, errors.ServerError) and error.retry_after == 2.5
    assert retry_hint(error) == 2.5
    assert retry_hint(errors.TransportError("reset")) is None


async def test_a_read_retried_after_503_waits_its_retry_after(flaky: tuple[Flaky, str]) -> None:
    """The transport's retry of a poll answered 503 waits at least Retry-After."""
    server, base_url = flaky
    async with _client(base_url, max_retries=3) as client:
        task = await client.get("task_x")
    assert task.status is omnivid.TaskStatus.COMPLETED
    first, second = server.polls
    assert second - first >= HINT


async def test_a_batch_poll_after_503_waits_its_retry_after(flaky: tuple[Flaky, str]) -> None:
    """In a batch, a poll failed with 503 is polled again no sooner than Retry-After."""
    server, base_url = flaky
    request = omnivid.VideoRequest(model="Omni-Flash-Ext", prompt="a fox in the snow")
    async with _client(base_url, max_retries=0) as client, client.map([request]) as outcomes:
        (outcome,) = [o async for o in outcomes]
    assert outcome.ok
    first, second = server.polls
    assert second - first >= HINT
