"""Fault injection: each knob by marker and by probability, and changing them at run time."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from simhelp import body, create, poll, submit

from omnivid.testing import Simulator, fingerprint

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_500_marker_answers_documented_500_without_creating(
    sim: Simulator, http: aiohttp.ClientSession, provider: str
) -> None:
    """[[fault:500]] answers 500 in the provider's error shape and creates no task."""
    resp = await submit(http, sim, provider, body(provider, "[[fault:500]]"))
    assert resp.status == 500
    assert "error" in await resp.json()
    assert sim.stats.tasks == []


async def test_gateway_5xx_is_an_html_page(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:502]] answers like a gateway: 502 with an HTML body, not JSON."""
    resp = await submit(http, sim, "apimart", body("apimart", "[[fault:502]]"))
    assert resp.status == 502
    assert resp.content_type == "text/html"
    assert "502 Bad Gateway" in await resp.text()


async def test_submit_marker_fires_once_per_fingerprint(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A submit fault fires TIMES times for one body; the identical retry then succeeds."""
    payload = body("apimart", "[[fault:503*2]]")
    statuses = [(await submit(http, sim, "apimart", payload)).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sim.stats.tasks_by_fingerprint == {fingerprint(payload): 1}


async def test_poll_marker_hits_first_polls(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:500@poll*2]] fails the task's first two polls only."""
    task_id = await create(http, sim, "apimart", markers="[[fault:500@poll*2]]")
    statuses = [(await poll(http, sim, "apimart", task_id)).status for _ in range(3)]
    assert statuses == [500, 500, 200]


async def test_lost_response_creates_task_then_drops(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """[[fault:lost-response]] creates the task and closes the connection unanswered."""
    payload = body("evolink", "[[fault:lost-response]]")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await submit(http, sim, "evolink", payload)
    assert len(sim.stats.tasks) == 1
    assert sim.stats.tasks_by_fingerprint[fingerprint(payload)] == 1
    assert sim.request_log[-1].status == 0


async def test_resubmitting_after_lost_response_is_counted_double(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A client that resubmits after a lost response shows up in double_submissions."""
    payload = body("apimart", "[[fault:lost-response]]")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await submit(http, sim, "apimart", payload)
    assert (await submit(http, sim, "apimart", payload)).status == 200
    assert sim.stats.double_submissions == {fingerprint(payload): 2}


async def test_reset_drops_connection_before_processing(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """[[fault:reset]] resets the connection and creates nothing."""
    with pytest.raises(aiohttp.ClientConnectionError):
        await submit(http, sim, "apimart", body("apimart", "[[fault:reset]]"))
    assert sim.stats.tasks == [] and sim.stats.faults == {"reset": 1}


async def test_reset_on_poll(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:reset@poll*2]] resets the task's first polls (aiohttp's own retry included)."""
    task_id = await create(http, sim, "apimart", markers="[[fault:reset@poll*2]]")
    with pytest.raises(aiohttp.ClientConnectionError):
        await poll(http, sim, "apimart", task_id)


async def test_slow_marker_delays_answer(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:slow=0.3]] answers after 0.3 real seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await submit(http, sim, "apimart", body("apimart", "[[fault:slow=0.3]]"))
    assert resp.status == 200 and loop.time() - start >= 0.3


async def test_slow_submit_is_created_even_if_client_gives_up(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A client timing out on a slow submit leaves a created task behind."""
    timeout = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(asyncio.TimeoutError):
        await submit(http, sim, "apimart", body("apimart", "[[fault:slow=0.5]]"), timeout=timeout)
    assert len(sim.stats.tasks) == 1


async def test_malformed_marker_cuts_json(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:malformed]] sends a 200 whose JSON body is cut short; the task exists."""
    resp = await submit(http, sim, "evolink", body("evolink", "[[fault:malformed]]"))
    assert resp.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(await resp.text())
    assert len(sim.stats.tasks) == 1


async def test_429_marker(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:429]] answers 429 with Retry-After and counts it as rate limited."""
    resp = await submit(http, sim, "apimart", body("apimart", "[[fault:429]]"))
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert sim.stats.rate_limited == 1


@pytest.mark.parametrize(
    ("knob", "check"),
    [
        ("error_5xx_rate", "5xx"),
        ("rate_limit_rate", "429"),
        ("reset_rate", "dropped"),
        ("lost_response_rate", "dropped"),
        ("malformed_rate", "malformed"),
    ],
)
async def test_probability_knobs(
    sim: Simulator, http: aiohttp.ClientSession, knob: str, check: str
) -> None:
    """Each probability set to 1 hits every request, and setting it back to 0 stops it."""
    sim.configure(**{knob: 1.0})
    try:
        resp = await submit(http, sim, "apimart", body("apimart"))
    except aiohttp.ClientConnectionError:
        assert check == "dropped"
    else:
        if check == "5xx":
            assert resp.status in (500, 502, 503)
        elif check == "429":
            assert resp.status == 429
        else:
            assert check == "malformed"
            with pytest.raises(json.JSONDecodeError):
                json.loads(await resp.text())
    sim.configure(**{knob: 0.0})
    assert (await submit(http, sim, "apimart", body("apimart", "again"))).status == 200


async def test_slow_probability(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """slow_rate=1 delays every poll by slow_seconds."""
    task_id = await create(http, sim, "evolink")
    sim.faults.slow_rate, sim.faults.slow_seconds = 1.0, 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await poll(http, sim, "evolink", task_id)).status == 200
    assert loop.time() - start >= 0.2


async def test_faults_change_mid_run(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Assigning sim.faults fields starts and stops a fault storm for the next requests."""
    task_id = await create(http, sim, "apimart")
    sim.faults.error_5xx_rate = 1.0
    sim.faults.error_5xx_statuses = (503,)
    assert (await poll(http, sim, "apimart", task_id)).status == 503
    sim.faults.error_5xx_rate = 0.0
    assert (await poll(http, sim, "apimart", task_id)).status == 200


def test_fault_settings_are_validated() -> None:
    """Probabilities outside [0, 1] and unknown settings are refused."""
    sim = Simulator()
    with pytest.raises(ValueError):
        sim.faults.reset_rate = 1.5
    with pytest.raises(TypeError):
        sim.configure(no_such_knob=1)
    with pytest.raises(ValueError):
        sim.configure(time_scale=2.0)
