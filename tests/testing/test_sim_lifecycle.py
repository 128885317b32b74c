"""Task lifecycle: statuses, progress, durations and estimates, failures, costs, time."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from simhelp import create, poll, task_data, wait_status

from omnivid.testing import FAILURES, Simulator

pytestmark = pytest.mark.anyio


async def _statuses(
    http: aiohttp.ClientSession, sim: Simulator, provider: str, task_id: str
) -> list[tuple[str, int]]:
    seen = []
    while True:
        data = task_data(provider, await (await poll(http, sim, provider, task_id)).json())
        seen.append((data["status"], data["progress"]))
        if data["status"] in ("completed", "failed", "cancelled"):
            return seen
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_task_goes_pending_processing_completed(
    http: aiohttp.ClientSession, provider: str
) -> None:
    """A task is pending, then processing with rising progress, then completed at 100."""
    async with Simulator() as sim:  # real time: only advance() moves the task
        task_id = await create(http, sim, provider, markers="[[duration=200]]")
        seen = []
        for step in (0, 20, 80, 60, 40):
            sim.advance(step)
            data = task_data(provider, await (await poll(http, sim, provider, task_id)).json())
            seen.append((data["status"], data["progress"]))
    assert seen == [
        ("pending", 0),
        ("processing", 10),
        ("processing", 50),
        ("processing", 80),
        ("completed", 100),
    ]


async def test_progress_rises_while_polling(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Polled in real (scaled) time, progress never goes down and ends at 100."""
    task_id = await create(http, sim, "evolink", markers="[[duration=200]]")
    seen = await _statuses(http, sim, "evolink", task_id)
    progress = [value for _, value in seen]
    assert progress == sorted(progress) and seen[-1] == ("completed", 100)


async def test_time_scale_compresses_durations(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A four-minute task completes in about a quarter of a real second at time_scale 0.001."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    task_id = await create(http, sim, "apimart", markers="[[duration=240]]")
    payload = await wait_status(http, sim, "apimart", task_id)
    elapsed = loop.time() - start
    assert 0.2 < elapsed < 2.0
    data = payload["data"]
    assert data["actual_time"] == 240
    assert data["completed"] - data["created"] in (239, 240, 241)


@pytest.mark.parametrize("sim_options", [{"durations": {"Omni-Flash-Ext": (100, 110)}}])
async def test_durations_are_drawn_from_the_configured_range(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """actual_time lies in the configured duration range."""
    ids = [await create(http, sim, "apimart") for _ in range(3)]
    for task_id in ids:
        data = (await wait_status(http, sim, "apimart", task_id))["data"]
        assert 100 <= data["actual_time"] <= 110


@pytest.mark.parametrize("sim_options", [{"estimate_error": 0.3}])
async def test_estimate_error_scatters_estimates_around_truth(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """With estimate_error=0.3 estimated_time is within 30% of the true duration."""
    for _ in range(5):
        task_id = await create(http, sim, "apimart", markers="[[duration=100]]")
        data = (await (await poll(http, sim, "apimart", task_id)).json())["data"]
        assert 70 <= data["estimated_time"] <= 130


@pytest.mark.parametrize("sim_options", [{"instant": True}])
async def test_instant_tasks_are_done_at_first_poll(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """With instant=True the first poll already sees the task completed."""
    task_id = await create(http, sim, "evolink")
    payload = await (await poll(http, sim, "evolink", task_id)).json()
    assert payload["status"] == "completed" and payload["results"]


@pytest.mark.parametrize("cause", ["quota", "moderation", "timeout"])
@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_failure_markers_fail_the_task(
    sim: Simulator, http: aiohttp.ClientSession, provider: str, cause: str
) -> None:
    """[[fail:CAUSE]] fails the task with the documented error for that cause."""
    task_id = await create(http, sim, provider, markers=f"[[fail:{cause}]]")
    data = task_data(provider, await wait_status(http, sim, provider, task_id))
    message, evolink_code, _ = FAILURES[cause]
    assert data["status"] == "failed"
    if provider == "apimart":
        assert data["error"] == {"message": message, "code": "task_failed"}
        assert cause in data["error"]["message"]
    else:
        assert data["error"]["code"] == evolink_code
        assert "results" not in data


@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_cancel_marker_cancels_the_task(
    sim: Simulator, http: aiohttp.ClientSession, provider: str
) -> None:
    """[[cancel]] ends the task with status cancelled and no result."""
    task_id = await create(http, sim, provider, markers="[[cancel]]")
    data = task_data(provider, await wait_status(http, sim, provider, task_id))
    assert data["status"] == "cancelled"
    assert "result" not in data and "results" not in data


@pytest.mark.parametrize(
    ("rate", "status"),
    [
        ("fail_quota_rate", "failed"),
        ("fail_moderation_rate", "failed"),
        ("fail_timeout_rate", "failed"),
        ("cancel_rate", "cancelled"),
    ],
)
async def test_failure_probabilities(
    sim: Simulator, http: aiohttp.ClientSession, rate: str, status: str
) -> None:
    """A failure probability of 1 ends every task that way."""
    sim.configure(**{rate: 1.0})
    task_id = await create(http, sim, "apimart", markers="[[duration=10]]")
    assert (await wait_status(http, sim, "apimart", task_id))["data"]["status"] == status


@pytest.mark.parametrize(
    ("model", "cost", "credits"),
    [("Omni-Flash-Ext", 0.4, 4), ("gemini-omni-flash-preview", 1.0, 10)],
)
async def test_apimart_costs_are_charged_on_completion(
    sim: Simulator, http: aiohttp.ClientSession, model: str, cost: float, credits: int
) -> None:
    """Cost is 0 while running and the model's price once completed; the ledger adds it up."""
    extra: dict[str, Any] = {"duration": None} if model.startswith("gemini") else {}
    task_id = await create(http, sim, "apimart", model=model, markers="[[duration=5000]]", **extra)
    running = (await (await poll(http, sim, "apimart", task_id)).json())["data"]
    assert (running["cost"], running["credits_cost"]) == (0, 0)
    assert sim.stats.total_cost == 0
    sim.advance(5000)
    data = (await wait_status(http, sim, "apimart", task_id))["data"]
    assert (data["cost"], data["credits_cost"]) == (cost, credits)
    assert sim.stats.total_cost == pytest.approx(cost)
    assert sim.stats.cost_by_key[sim.api_key] == pytest.approx(cost)


async def test_failed_tasks_cost_nothing(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A failed task is not charged."""
    task_id = await create(http, sim, "evolink", markers="[[fail:quota]]")
    await wait_status(http, sim, "evolink", task_id)
    assert sim.stats.total_cost == 0 and sim.stats.total_credits == 0


async def test_evolink_charges_actual_video_length(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An EvoLink task is charged credits for its video_duration at the credit price."""
    task_id = await create(http, sim, "evolink", duration=4)
    payload = await wait_status(http, sim, "evolink", task_id)
    assert payload["task_info"]["video_duration"] == 4
    assert sim.stats.total_credits == pytest.approx(40.94)
    assert sim.stats.total_cost == pytest.approx(0.4094)


async def test_advance_finishes_tasks(http: aiohttp.ClientSession) -> None:
    """sim.advance() moves simulated time, so a long task completes without waiting."""
    async with Simulator(time_scale=1.0) as sim:
        task_id = await create(http, sim, "apimart")
        assert sim.task_status(task_id) == "pending"
        sim.advance(400)
        assert sim.task_status(task_id) == "completed"
        data = (await (await poll(http, sim, "apimart", task_id)).json())["data"]
    assert data["status"] == "completed" and 180 <= data["actual_time"] <= 300


async def test_driver_finishes_tasks_nobody_polls(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Tasks end at their due time even without polls (the in-flight count drops)."""
    await create(http, sim, "apimart", markers="[[duration=200]]")
    assert sim.in_flight() == 1
    await asyncio.sleep(0.6)
    assert sim.in_flight() == 0 and sim.stats.total_cost == pytest.approx(0.4)


async def test_seed_makes_runs_repeatable(http: aiohttp.ClientSession) -> None:
    """Two simulators with the same seed draw the same durations."""
    estimates = []
    for _ in range(2):
        async with Simulator(seed=99, estimate_error=0.5) as sim:
            task_id = await create(http, sim, "apimart")
            data = (await (await poll(http, sim, "apimart", task_id)).json())["data"]
            estimates.append(data["estimated_time"])
    assert estimates[0] == estimates[1]
