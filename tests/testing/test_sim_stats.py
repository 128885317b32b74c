"""Introspection: sim.stats, the request log, the /_sim endpoints and the client helper."""

from __future__ import annotations

import time

import aiohttp
import pytest
from simhelp import body, create, poll, submit

import omnivid
from omnivid.testing import Simulator, fingerprint

pytestmark = pytest.mark.anyio


async def test_counts_submits_and_polls(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Every submit and poll request is counted, whatever its answer."""
    task_id = await create(http, sim, "apimart")
    await submit(http, sim, "apimart", "{bad")
    await poll(http, sim, "apimart", task_id)
    await poll(http, sim, "evolink", "missing")
    assert (sim.stats.submits, sim.stats.polls) == (2, 2)
    assert sim.stats.tasks == [task_id]
    assert sim.stats.status_counts == {200: 2, 400: 1, 404: 1}


def test_fingerprint_ignores_callback_url_and_key_order() -> None:
    """The fingerprint is the sha256 of the canonical body without callback_url."""
    first = fingerprint({"model": "m", "prompt": "p", "callback_url": "https://a/b"})
    assert first == fingerprint({"prompt": "p", "model": "m"})
    assert first != fingerprint({"prompt": "q", "model": "m"})


async def test_max_in_flight_is_a_high_water_mark(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """max_in_flight keeps the most concurrent tasks a key had, per key."""
    for n in range(3):
        await create(http, sim, "apimart", markers=f"[[duration={1000 + n}]]")
    await submit(http, sim, "apimart", body("apimart"), key="other")
    sim.advance(2000)
    await create(http, sim, "apimart", markers="later")
    assert sim.stats.max_in_flight == {sim.api_key: 3, "other": 1}
    assert sim.in_flight() == 1


async def test_request_log_records_arrivals(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """request_log holds (monotonic arrival, method, path, status) for every API request."""
    before = time.monotonic()
    task_id = await create(http, sim, "evolink")
    await poll(http, sim, "evolink", task_id)
    (t1, m1, p1, s1), (t2, m2, p2, s2) = sim.request_log
    assert before <= t1 <= t2 <= time.monotonic()
    assert (m1, p1, s1) == ("POST", "/evolink/v1/videos/generations", 200)
    assert (m2, p2, s2) == ("GET", f"/evolink/v1/tasks/{task_id}", 200)


async def test_reset_stats(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """reset_stats() zeroes the counters and the log but keeps tasks in flight."""
    await create(http, sim, "apimart")
    sim.reset_stats()
    assert sim.stats.submits == 0 and sim.request_log == []
    assert sim.stats.max_in_flight == {sim.api_key: 1}


async def test_stats_endpoint(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """GET /_sim/stats returns the ledger as JSON for other processes."""
    await create(http, sim, "apimart", markers="[[duration=1]]")
    await sim.wait_idle()
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["submits"] == 1 and stats["total_cost"] == pytest.approx(0.4)
    assert list(stats["tasks_by_fingerprint"].values()) == [1]
    assert stats["double_submissions"] == {} and stats["in_flight"] == {}
    assert sim.request_log[-1].path.endswith("/v1/videos/generations")


async def test_config_endpoint_changes_faults(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """POST /_sim/config sets faults at run time; bad settings get 400."""
    async with http.post(f"{sim.url}/_sim/config", json={"error_5xx_rate": 1.0}) as resp:
        assert resp.status == 200
    assert sim.faults.error_5xx_rate == 1.0
    async with http.post(f"{sim.url}/_sim/config", json={"error_5xx_rate": 7}) as resp:
        assert resp.status == 400


async def test_advance_and_reset_endpoints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """POST /_sim/advance moves simulated time; POST /_sim/reset clears the stats."""
    task_id = await create(http, sim, "apimart")
    async with http.post(f"{sim.url}/_sim/advance", json={"seconds": 1000}) as resp:
        assert resp.status == 200
    assert sim.task_status(task_id) == "completed"
    async with http.post(f"{sim.url}/_sim/reset") as resp:
        assert resp.status == 200
    assert sim.stats.submits == 0


async def test_client_helper_points_at_the_simulator(sim: Simulator) -> None:
    """sim.client() builds an omnivid.AsyncClient for the simulator."""
    async with sim.client("evolink") as client:
        assert isinstance(client, omnivid.AsyncClient)


def test_base_url_layout() -> None:
    """Base URLs are the server root plus the provider name; unknown providers are refused."""
    sim = Simulator()
    sim._port = 8080
    assert sim.base_url("apimart") == "http://127.0.0.1:8080/apimart"
    assert sim.base_url("evolink") == "http://127.0.0.1:8080/evolink"
    with pytest.raises(ValueError):
        sim.base_url("openai")
