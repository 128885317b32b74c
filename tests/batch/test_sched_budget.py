"""max_cost: reservations before submits, not_submitted outcomes once the budget is reached."""

from __future__ import annotations

import attrs
import pytest
from schedhelp import client, collect, evo, gemini

import omnivid
from omnivid.errors import BudgetExceededError
from omnivid.providers import get_provider
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_budget_stops_new_submits(sim: Simulator) -> None:
    """With max_cost=3 and jobs costing 1, three run and the rest come back not submitted."""
    async with client(sim) as c, c.map([gemini(i) for i in range(10)], max_cost=3.0) as out:
        got = await collect(out)
        stats = out.statistics()
    done = [o for o in got if o.ok]
    refused = [o for o in got if isinstance(o.error, BudgetExceededError)]
    assert len(done) == 3 and len(refused) == 7 and len(got) == 10
    assert all(o.task is None and o.attempts == 0 for o in refused)
    assert len(sim.stats.tasks) == 3 and sim.stats.total_cost == pytest.approx(3.0)
    assert stats.cost_spent == pytest.approx(3.0) and stats.cost_reserved == 0


async def test_reservations_count_before_the_money_is_spent(sim: Simulator) -> None:
    """Jobs in flight reserve their cost: a budget for 2 never has 3 tasks at once."""
    jobs = [gemini(i, "[[duration=100]]") for i in range(6)]
    async with client(sim) as c, c.map(jobs, max_cost=2.0, max_in_flight=6) as out:
        got = await collect(out)
    assert sim.stats.max_in_flight[sim.api_key] == 2
    assert sum(o.ok for o in got) == 2


async def test_free_failures_leave_room_for_more(sim: Simulator) -> None:
    """A failed task costs nothing, so its reservation goes back to the budget."""
    jobs = [gemini(0, "[[fail:moderation]]"), gemini(1, "[[fail:moderation]]")]
    jobs += [gemini(i) for i in range(2, 5)]
    async with client(sim) as c, c.map(jobs, max_cost=2.0, max_in_flight=1) as out:
        got = await collect(out)
    assert sum(o.ok for o in got) == 2
    assert sum(isinstance(o.error, BudgetExceededError) for o in got) == 1
    assert sim.stats.total_cost == pytest.approx(2.0)


async def test_a_custom_cost_estimate_is_reserved(sim: Simulator) -> None:
    """cost_estimate overrides the model's estimate for the reservation."""
    jobs = [gemini(i) for i in range(4)]
    async with client(sim) as c, c.map(jobs, max_cost=2.0, cost_estimate=2.0) as out:
        got = await collect(out)
    assert sum(o.ok for o in got) == 1


async def test_evolink_budget_is_in_credits(sim: Simulator) -> None:
    """EvoLink jobs reserve credits by duration (5 s: 51.17), then their credits_reserved."""
    jobs = [evo(i) for i in range(3)]  # 5 s each: 51.17 credits reserved and charged
    async with client(sim, "evolink") as c, c.map(jobs, max_cost=110.0) as out:
        got = await collect(out)
        stats = out.statistics()
    assert sum(o.ok for o in got) == 2  # 2 x 51.17 fit in 110, a third would not
    assert stats.cost_spent == pytest.approx(sum(o.cost for o in got))


async def test_a_short_evolink_job_fits_a_small_budget(sim: Simulator) -> None:
    """A 3-second EvoLink job (30.70 credits) is submitted under max_cost=40."""
    job = attrs.evolve(evo(0), duration=3)
    async with client(sim, "evolink") as c, c.map([job], max_cost=40.0) as out:
        got = await collect(out)
    assert got[0].ok and got[0].cost == pytest.approx(30.70, abs=0.01)


async def test_auto_duration_reserves_the_longest(sim: Simulator) -> None:
    """duration="auto" reserves what 10 s would cost, so the budget never under-reserves."""
    spec = get_provider("evolink").models[evo(0).model]
    assert spec.estimate(attrs.evolve(evo(0), duration="auto")) == pytest.approx(102.34)
    assert spec.estimate(attrs.evolve(evo(0), duration=None)) == pytest.approx(102.34)
    job = attrs.evolve(evo(0), duration="auto")
    async with client(sim, "evolink") as c, c.map([job], max_cost=100.0) as out:
        got = await collect(out)
    assert isinstance(got[0].error, BudgetExceededError)


async def test_budget_event_says_not_submitted(sim: Simulator) -> None:
    """Each job refused by the budget emits one not_submitted event."""
    events: list[omnivid.Event] = []
    async with (
        client(sim) as c,
        c.map([gemini(i) for i in range(4)], max_cost=1.0, on_event=events.append) as out,
    ):
        await collect(out)
    refused = [e for e in events if e.kind == "not_submitted"]
    assert len(refused) == 3 and all("budget" in e.detail["error"] for e in refused)
