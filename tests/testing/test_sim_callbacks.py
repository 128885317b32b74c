"""EvoLink callbacks: delivery on terminal status, the 1/2/4 s retry schedule, URL rules."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from simhelp import body, create, poll, submit

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


@attrs.define
class Receiver:
    """A loopback webhook endpoint answering with scripted statuses."""

    url: str = ""
    statuses: list[int] = attrs.field(factory=list)
    received: list[dict[str, Any]] = attrs.field(factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running callback receiver on 127.0.0.1."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield hook
    await runner.cleanup()


@pytest.mark.parametrize("markers", ["", "[[fail:quota]]", "[[cancel]]"])
async def test_callback_posts_task_body_on_terminal_status(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver, markers: str
) -> None:
    """On completed, failed or cancelled the task body (as GET returns it) is POSTed once."""
    task_id = await create(
        http, sim, "evolink", callback_url=receiver.url, markers=f"{markers} [[duration=10]]"
    )
    await sim.wait_idle()
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got == await (await poll(http, sim, "evolink", task_id)).json()
    assert got["status"] in ("completed", "failed", "cancelled")
    assert [attempt.result for attempt in sim.stats.callbacks] == [200]


@pytest.mark.parametrize("sim_options", [{"time_scale": 0.01}])
async def test_callback_retries_after_1_2_4_seconds(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Non-2xx answers are retried after 1, 2 and 4 scaled seconds, then given up."""
    receiver.statuses = [500, 502, 404, 503]
    await create(http, sim, "evolink", callback_url=receiver.url, markers="[[duration=1]]")
    await sim.wait_idle()
    attempts = sim.stats.callbacks
    assert [attempt.result for attempt in attempts] == [500, 502, 404, 503]
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, (0.01, 0.02, 0.04), strict=True):
        assert expected * 0.9 <= gap < expected + 0.5


@pytest.mark.parametrize("sim_options", [{"time_scale": 0.01}])
async def test_callback_stops_retrying_after_success(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """A 2xx answer ends the retries."""
    receiver.statuses = [500, 204]
    await create(http, sim, "evolink", callback_url=receiver.url, markers="[[duration=1]]")
    await sim.wait_idle()
    assert [attempt.result for attempt in sim.stats.callbacks] == [500, 204]


async def test_unreachable_callback_is_recorded_as_error(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Connection errors count as failed attempts and are retried."""
    sim.configure(callback_retry_delays=(1.0,))
    url = "http://127.0.0.1:9/hook"
    await create(http, sim, "evolink", callback_url=url, markers="[[duration=1]]")
    await sim.wait_idle()
    results = [attempt.result for attempt in sim.stats.callbacks]
    assert len(results) == 2 and all(isinstance(result, str) for result in results)


async def test_loopback_callbacks_need_permission(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Without allow_loopback_callbacks a loopback callback URL is refused with 400."""
    async with Simulator() as sim:
        resp = await submit(http, sim, "evolink", body("evolink", callback_url=receiver.url))
    assert resp.status == 400
    assert "callback_url" in (await resp.json())["error"]["message"]


async def test_callback_url_is_not_part_of_fingerprint(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Two submits differing only in callback_url share one fingerprint."""
    await create(http, sim, "evolink", callback_url=receiver.url)
    await create(http, sim, "evolink")
    assert list(sim.stats.tasks_by_fingerprint.values()) == [2]
