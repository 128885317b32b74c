"""Authentication, per-key rate limits with each Retry-After form, concurrency and budgets."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import pytest
from simhelp import body, create, poll, submit

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_any_nonempty_key_is_accepted_by_default(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Without api_keys any non-empty bearer key works; sim.api_key is one."""
    assert (await submit(http, sim, "apimart", body("apimart"), key="whatever")).status == 200
    assert (await submit(http, sim, "apimart", body("apimart", "2"))).status == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic abc", "Bearer wrong"])
@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_bad_credentials_get_401(
    http: aiohttp.ClientSession, provider: str, header: str | None
) -> None:
    """A missing, malformed or unknown key gets the provider's 401."""
    async with Simulator(api_keys=["right"]) as sim:
        assert sim.api_key == "right"
        headers = {} if header is None else {"Authorization": header}
        url = f"{sim.base_url(provider)}/v1/tasks/anything"
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 401
            error = (await resp.json())["error"]
    assert error["type"] == "authentication_error"


@pytest.mark.parametrize("sim_options", [{"rps": 2, "retry_after_seconds": 0.05}])
async def test_rps_limit_gives_429_with_seconds(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Beyond rps (burst rps) a key gets 429 with a fractional Retry-After in seconds."""
    task_id = await create(http, sim, "apimart")
    statuses = [(await poll(http, sim, "apimart", task_id)).status for _ in range(3)]
    assert statuses[:1] == [200] and statuses[-1] == 429
    resp = await poll(http, sim, "apimart", task_id)
    assert resp.status == 429 and resp.headers["Retry-After"] == "0.05"
    assert (await resp.json())["error"]["type"] == "rate_limit_error"
    assert sim.stats.rate_limited == statuses.count(429) + 1


@pytest.mark.parametrize("sim_options", [{"rps": 1, "retry_after": "http-date"}])
async def test_rps_limit_with_http_date(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """With retry_after="http-date" the 429 carries an HTTP-date about a second ahead."""
    await create(http, sim, "evolink")
    resp = await submit(http, sim, "evolink", body("evolink"))
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    when = email.utils.parsedate_to_datetime(resp.headers["Retry-After"]).timestamp()
    assert time.time() - 1 <= when <= time.time() + 2


@pytest.mark.parametrize("sim_options", [{"rps": 1, "retry_after": None}])
async def test_rps_limit_without_retry_after(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """With retry_after=None the 429 has no Retry-After header."""
    await create(http, sim, "apimart")
    resp = await submit(http, sim, "apimart", body("apimart"))
    assert resp.status == 429 and "Retry-After" not in resp.headers


@pytest.mark.parametrize("sim_options", [{"rps": 5, "burst": 1}])
async def test_rps_bucket_refills(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """After 1/rps seconds the key may send again."""
    task_id = await create(http, sim, "apimart")
    assert (await poll(http, sim, "apimart", task_id)).status == 429
    await asyncio.sleep(0.25)
    assert (await poll(http, sim, "apimart", task_id)).status == 200


@pytest.mark.parametrize("sim_options", [{"rps": 1}])
async def test_rate_limits_are_per_key(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """One key's exhausted bucket does not limit another key."""
    assert (await submit(http, sim, "apimart", body("apimart"), key="a")).status == 200
    assert (await submit(http, sim, "apimart", body("apimart", "x"), key="a")).status == 429
    assert (await submit(http, sim, "apimart", body("apimart", "y"), key="b")).status == 200


@pytest.mark.parametrize("sim_options", [{"max_concurrent_tasks": 2}])
async def test_concurrent_task_limit(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A key with max_concurrent_tasks in flight gets 429 until one ends."""
    for n in range(2):
        await create(http, sim, "apimart", markers=f"[[duration={1000 + n * 1000}]]")
    assert (await submit(http, sim, "apimart", body("apimart", "third"))).status == 429
    sim.advance(1500)
    assert (await submit(http, sim, "apimart", body("apimart", "third"))).status == 200
    assert sim.stats.max_in_flight[sim.api_key] == 2


@pytest.mark.parametrize("sim_options", [{"budgets": {"sk-omnivid-sim": 1.0}}])
async def test_budget_runs_out_with_402(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Submits are refused with 402 once held plus spent money would pass the budget."""
    await create(http, sim, "apimart")
    await create(http, sim, "apimart", markers="b")
    resp = await submit(http, sim, "apimart", body("apimart", "c"))
    assert resp.status == 402
    assert (await resp.json())["error"]["type"] == "payment_required"
    assert sim.balance(sim.api_key) == pytest.approx(0.2)


@pytest.mark.parametrize("sim_options", [{"budgets": {"sk-omnivid-sim": 0.5}}])
async def test_failed_tasks_release_their_hold(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Money held for a task that fails becomes available again."""
    await create(http, sim, "apimart", markers="[[fail:quota]] [[duration=100000]]")
    assert (await submit(http, sim, "apimart", body("apimart", "x"))).status == 402
    sim.advance(100000)
    assert (await submit(http, sim, "apimart", body("apimart", "x"))).status == 200


async def test_denied_model_gets_403(http: aiohttp.ClientSession) -> None:
    """A key configured without access to a model gets EvoLink's 403 model_access_denied."""
    model = "gemini-omni-flash-reference-to-video"
    async with Simulator(denied_models={"limited": model}) as sim:
        resp = await submit(http, sim, "evolink", body("evolink"), key="limited")
        ok = await submit(http, sim, "evolink", body("evolink"), key="other")
    assert resp.status == 403 and ok.status == 200
    assert (await resp.json())["error"]["code"] == "model_access_denied"


async def test_tasks_belong_to_their_key(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Another key cannot read a task (404)."""
    task_id = await create(http, sim, "apimart")
    resp = await poll(http, sim, "apimart", task_id, headers={"Authorization": "Bearer other"})
    assert resp.status == 404
