"""map_many: one batch over several provider accounts (issue 16 item 10).

Mixed APIMart and EvoLink jobs against the simulator: one outcome per job, each account's own
budget and 429 cooldown, one journal resumed across providers, unknown models and keys of
another account as outcomes, cancellation, lazy input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from schedhelp import EVO, GEMINI, IMMEDIATE, Counting, FakeApi, client, collect, evo, gemini

import omnivid
from omnivid.batch._multi import OUTCOME_BUFFER
from omnivid.batch._route import SeenKeys
from omnivid.errors import (
    BudgetExceededError,
    ConfigurationError,
    JournalConflictError,
    ValidationError,
)
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

LONG = "[[duration=300]]"


def mixed(n: int, marker: str = "") -> list[tuple[str, omnivid.VideoRequest]]:
    """``n`` keyed jobs alternating APIMart (even) and EvoLink (odd)."""
    return [(f"k{i}", gemini(i, marker) if i % 2 == 0 else evo(i, marker)) for i in range(n)]


def _batch_tasks() -> list[str]:
    """Names of running asyncio tasks started by omnivid's batch code."""
    return [t.get_name() for t in asyncio.all_tasks() if "omnivid.batch" in t.get_name()]


async def _quiet(sim: Simulator) -> bool:
    """True when no request reaches the simulator for a while (20 ms real)."""
    before = len(sim.request_log)
    await anyio.sleep(0.02)
    return len(sim.request_log) == before


# -- one stream, routed by model ---------------------------------------------------------------
async def test_mixed_requests_give_one_outcome_per_job(sim: Simulator) -> None:
    """20 jobs, half APIMart half EvoLink: 20 ok outcomes, each run by its model's provider."""
    jobs = mixed(20)
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, max_in_flight=4) as outcomes,
    ):
        got = await collect(outcomes)
        stats = outcomes.statistics()
        per = outcomes.statistics_by_provider()
    assert sorted(o.key for o in got) == sorted(k for k, _ in jobs)
    assert all(o.ok for o in got)
    for o in got:
        assert o.task is not None
        assert o.task.provider == ("apimart" if o.request.model == GEMINI else "evolink")
    assert len(sim.stats.tasks) == 20
    assert per["apimart"].completed == per["evolink"].completed == 10
    assert stats.jobs == stats.completed == 20 and stats.submits == 20
    assert per["apimart"].cost_spent == pytest.approx(10.0)  # currency
    assert per["evolink"].cost_spent > 100  # credits: not added to APIMart's money
    assert stats.cost_spent == 0.0 and stats.max_cost is None  # units differ: per account


async def test_bare_requests_are_keyed_by_their_index_in_the_whole_input(sim: Simulator) -> None:
    """Without keys, a job's key is its position in the input, whichever account runs it."""
    jobs = [gemini(0), evo(1), evo(2), gemini(3)]
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs) as outcomes,
    ):
        got = {o.key: o.request for o in await collect(outcomes)}
    assert got == dict(enumerate(jobs))


async def test_an_async_iterable_input(sim: Simulator) -> None:
    """An async generator feeds the router like an iterable."""

    async def source() -> AsyncIterator[tuple[str, omnivid.VideoRequest]]:
        for item in mixed(6):
            await anyio.lowlevel.checkpoint()
            yield item

    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], source()) as outcomes,
    ):
        got = await collect(outcomes)
    assert sorted(o.key for o in got) == [f"k{i}" for i in range(6)] and all(o.ok for o in got)


async def test_an_unknown_model_is_an_outcome_not_a_crash(sim: Simulator) -> None:
    """A model no client serves ends as its own ValidationError outcome, naming the model and
    the providers given; the other jobs run."""
    jobs = [("a", gemini(0)), ("e", evo(1)), ("x", omnivid.VideoRequest(model="nope", prompt="x"))]
    events: list[omnivid.Event] = []
    async with client(sim) as a, omnivid.map_many([a], jobs, on_event=events.append) as outcomes:
        got = {o.key: o for o in await collect(outcomes)}
        stats = outcomes.statistics()
    assert got["a"].ok
    for key, model in (("e", EVO), ("x", "nope")):
        error = got[key].error
        assert isinstance(error, ValidationError) and error.field == "model"
        assert model in str(error) and "apimart" in str(error)
        assert got[key].task is None and got[key].attempts == 0
    assert "pass an AsyncClient('evolink')" in str(got["e"].error)
    assert len(sim.stats.tasks) == 1
    assert stats.jobs == 3 and stats.failed == 2 and stats.completed == 1
    refused = [e for e in events if e.kind == "not_submitted"]
    assert {e.key for e in refused} == {"e", "x"}


async def test_events_name_their_provider(sim: Simulator) -> None:
    """on_event gets every account's events, each with detail["provider"]."""
    events: list[omnivid.Event] = []
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], mixed(4), on_event=events.append) as outcomes,
    ):
        await collect(outcomes)
    submitted = {e.key: e.detail["provider"] for e in events if e.kind == "submitted"}
    assert submitted == {"k0": "apimart", "k1": "evolink", "k2": "apimart", "k3": "evolink"}


async def test_client_for_names_the_account_of_an_outcome(sim: Simulator) -> None:
    """client_for(outcome) is the client to download its video with."""
    async with client(sim) as a, client(sim, "evolink") as e:
        async with omnivid.map_many([a, e], mixed(2)) as outcomes:
            async for outcome in outcomes:
                assert outcomes.client_for(outcome) is (a if outcome.key == "k0" else e)
        assert outcomes.clients == {"apimart": a, "evolink": e}
        with pytest.raises(ValidationError, match="nope"):
            outcomes.client_for("nope")


# -- each account its own limits ---------------------------------------------------------------
async def test_one_accounts_budget_stops_only_its_submits(sim: Simulator) -> None:
    """max_cost={"apimart": 2}: two APIMart jobs run, the rest are not submitted; EvoLink,
    uncapped, runs all of its jobs."""
    jobs = mixed(12)
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, max_cost={"apimart": 2.0}) as outcomes,
    ):
        got = await collect(outcomes)
        per = outcomes.statistics_by_provider()
    apimart = [o for o in got if o.request.model == GEMINI]
    evolink = [o for o in got if o.request.model == EVO]
    assert sum(o.ok for o in apimart) == 2
    assert sum(isinstance(o.error, BudgetExceededError) for o in apimart) == 4
    assert all(o.ok for o in evolink) and len(evolink) == 6
    assert per["apimart"].max_cost == 2.0 and per["evolink"].max_cost is None
    assert per["apimart"].cost_spent == pytest.approx(2.0)


async def test_a_number_applies_to_each_account(sim: Simulator) -> None:
    """max_cost=110 caps each account in its own unit: 110 currency is room for all six
    APIMart jobs, 110 credits for two 5-second EvoLink jobs (51.17 each)."""
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], mixed(12), max_cost=110.0) as outcomes,
    ):
        got = await collect(outcomes)
    assert sum(o.ok for o in got if o.request.model == GEMINI) == 6
    assert sum(o.ok for o in got if o.request.model == EVO) == 2


async def test_max_in_flight_per_account(sim: Simulator) -> None:
    """max_in_flight={"apimart": 1, "evolink": 3} holds for each account's tasks."""
    jobs = mixed(16, "[[duration=20]]")
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, max_in_flight={"apimart": 1, "evolink": 3}) as outcomes,
    ):
        got = await collect(outcomes)
    assert all(o.ok for o in got)
    assert sim.stats.max_in_flight[sim.api_key] <= 4  # one key for both providers in the sim


async def test_a_429_storm_on_one_account_does_not_pause_the_other(tmp_path: Path) -> None:
    """Every APIMart submit is answered 429 once (Retry-After 0.4 s real): APIMart's gate
    closes, EvoLink's stays open, and every EvoLink job finishes while APIMart waits."""
    events: list[omnivid.Event] = []
    jobs = [(f"a{i}", gemini(i, "[[fault:429@submit]]")) for i in range(2)]
    jobs += [(f"e{i}", evo(i, "[[duration=5]]")) for i in range(2)]
    jobs = [jobs[0], jobs[2], jobs[1], jobs[3]]  # interleaved
    async with (
        Simulator(time_scale=0.001, seed=7, retry_after_seconds=0.4) as sim,
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, on_event=events.append) as outcomes,
    ):
        order = [(o.key, o.completed_at) for o in await collect(outcomes)]
        per = outcomes.statistics_by_provider()
    cooldowns = [ev for ev in events if ev.kind == "rate_limited"]
    assert cooldowns and {ev.detail["provider"] for ev in cooldowns} == {"apimart"}
    reopens = min(ev.detail["until"] for ev in cooldowns)
    evolink_done = [t for key, t in order if key.startswith("e")]
    assert len(evolink_done) == 2 and max(evolink_done) < reopens  # all while APIMart waited
    assert [key[0] for key, _ in order] == ["e"] * 2 + ["a"] * 2
    assert per["apimart"].rate_limited >= 1 and per["evolink"].rate_limited == 0


# -- one journal ---------------------------------------------------------------------------------
async def test_a_journal_rerun_resumes_both_providers_without_resubmitting(
    sim: Simulator, tmp_path: Path
) -> None:
    """A run cancelled once all six tasks are submitted leaves them running; the rerun polls
    them (no new submit) and a third run takes every result from the journal."""
    journal = tmp_path / "runs" / "j.sqlite"
    jobs = mixed(6, "[[duration=200]]")
    submitted: list[omnivid.Event] = []

    def on_event(event: omnivid.Event) -> None:
        if event.kind == "submitted":
            submitted.append(event)
            if len(submitted) == len(jobs):
                first.cancel()

    async with client(sim) as a, client(sim, "evolink") as e:
        async with omnivid.map_many([a, e], jobs, journal=journal, on_event=on_event) as first:
            assert await collect(first) == []
        assert set(first.abandoned) == {k for k, _ in jobs}
        assert set(first.abandoned_by_provider["evolink"]) == {"k1", "k3", "k5"}
        tasks = set(sim.stats.tasks)
        assert set(first.abandoned.values()) == tasks and sim.stats.submits == 6

        async with omnivid.map_many([a, e], jobs, journal=journal) as second:
            got = await collect(second)
            per = second.statistics_by_provider()
        assert all(o.ok for o in got) and {o.task_id for o in got} == tasks
        assert sim.stats.submits == 6  # nothing submitted twice
        assert per["apimart"].resumed == per["evolink"].resumed == 3

        async with omnivid.map_many([a, e], jobs, journal=str(journal)) as third:
            again = await collect(third)
        assert all(o.ok and o.from_journal for o in again) and sim.stats.submits == 6


async def test_a_journal_object_is_shared_and_left_open(sim: Simulator, tmp_path: Path) -> None:
    """A Journal passed in is used by every account and stays open afterwards."""
    with omnivid.Journal.open(tmp_path / "j.sqlite") as journal:
        async with (
            client(sim) as a,
            client(sim, "evolink") as e,
            omnivid.map_many([a, e], mixed(4), journal=journal) as outcomes,
        ):
            await collect(outcomes)
        assert not journal.closed
        assert {k: journal.get(k).provider for k in ("k0", "k1")} == {  # type: ignore[union-attr]
            "k0": "apimart",
            "k1": "evolink",
        }


async def test_a_key_used_for_another_provider_is_a_conflict(
    sim: Simulator, tmp_path: Path
) -> None:
    """With a journal, a key reused for the other account is a JournalConflictError outcome
    naming the provider that has it, whether the first job is still running or done, in this
    run or an earlier one."""
    journal = tmp_path / "j.sqlite"
    jobs = [
        ("same", gemini(0, "[[duration=50]]")),
        ("same", evo(1)),  # while the APIMart job runs
        ("done", evo(2)),
    ]
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, journal=journal) as outcomes,
    ):
        got = [(o.key, o) for o in await collect(outcomes)]
        # the EvoLink job keyed "done" has ended: its key may not go to APIMart either
        async with omnivid.map_many([a, e], [("done", gemini(3))], journal=journal) as again:
            later = await collect(again)
    conflicts = [o for _, o in got if isinstance(o.error, JournalConflictError)]
    assert len(conflicts) == 1 and conflicts[0].request.model == EVO
    assert "already used for apimart" in str(conflicts[0].error)
    assert sum(o.ok for _, o in got) == 2 and len(sim.stats.tasks) == 2
    assert isinstance(later[0].error, JournalConflictError) and len(sim.stats.tasks) == 2


async def test_a_refused_job_never_overwrites_another_providers_entry(
    sim: Simulator, tmp_path: Path
) -> None:
    """A job that would end not submitted (here EvoLink's budget of 0) under a key APIMart's
    running task holds is refused before its account sees it: the APIMart entry keeps its
    task id and state, so a rerun polls it instead of paying for it again."""
    journal = tmp_path / "j.sqlite"
    jobs = [("same", gemini(0, "[[duration=50]]")), ("same", evo(1))]
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs, journal=journal, max_cost={"evolink": 0.0}) as outcomes,
    ):
        got = {o.request.model: o for o in await collect(outcomes)}
    assert got[GEMINI].ok and isinstance(got[EVO].error, JournalConflictError)
    with omnivid.Journal.open(journal) as j:
        entry = j.get("same")
    assert entry is not None and entry.provider == "apimart" and entry.state == "completed"
    assert entry.task_id == got[GEMINI].task_id


async def test_without_a_journal_keys_need_not_be_unique(sim: Simulator) -> None:
    """As with client.map, keys only matter to a journal."""
    jobs = [("same", gemini(0)), ("same", evo(1))]
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], jobs) as outcomes,
    ):
        got = await collect(outcomes)
    assert len(got) == 2 and all(o.ok for o in got)


# -- cancellation and lazy input ---------------------------------------------------------------
async def test_leaving_the_block_cancels_every_account(sim: Simulator) -> None:
    """Breaking out after the first outcome stops all traffic, leaves no task behind and
    reports every task still running, on both providers."""
    jobs = [("quick", gemini(0, "[[duration=5]]")), *mixed(30, LONG)[1:]]
    async with client(sim) as a, client(sim, "evolink") as e:
        async with omnivid.map_many([a, e], jobs, max_in_flight=3) as outcomes:
            first = await anext(outcomes)
            assert _batch_tasks()
        assert _batch_tasks() == []
        assert first.key == "quick" and first.ok and outcomes.done
        known = {t for t in outcomes.abandoned.values() if t is not None}
        unanswered = sum(t is None for t in outcomes.abandoned.values())  # POSTs cut off
        others = set(sim.stats.tasks) - {first.task_id}
        assert known <= others and len(others - known) <= unanswered  # every task accounted
        by = outcomes.abandoned_by_provider
        assert 2 <= len(by["apimart"]) <= 3 and len(by["evolink"]) == 3
        running = [t for t in by["evolink"].values() if t is not None]
        assert all(sim.task_status(t) in ("pending", "processing") for t in running)
        assert await _quiet(sim)


async def test_an_enclosing_cancel_scope_cancels_every_account(sim: Simulator) -> None:
    """A timeout around the loop cancels the router and both batches cleanly."""
    async with client(sim) as a, client(sim, "evolink") as e:
        with anyio.move_on_after(0.05):
            async with omnivid.map_many([a, e], mixed(20, LONG), max_in_flight=2) as out:
                async for _ in out:
                    pass
        assert out.done and len(out.abandoned) == 4 and _batch_tasks() == []
        assert await _quiet(sim)


async def test_the_input_is_pulled_lazily(sim: Simulator) -> None:
    """A 100,000-job generator, left after 5 outcomes, was pulled only a few dozen jobs."""
    source = Counting(100_000, lambda i: gemini(i) if i % 2 == 0 else evo(i))
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], source, max_in_flight=4) as outcomes,
    ):
        n = 0
        async for _ in outcomes:
            n += 1
            if n == 5:
                break
    # per account: in flight + prefetch (8) in its batch + its stream (8); the outcomes
    # received and those waiting; a job in the router's hand
    assert source.pulled <= 2 * (4 + 8 + 8) + 5 + OUTCOME_BUFFER + 1


async def test_instant_jobs_run_in_bounded_memory(sim: Simulator) -> None:
    """5,000 instant jobs through two accounts: the input runs ahead of the outcomes by at
    most the accounts' windows and streams and the outcome buffer, and every job has its
    outcome."""
    source = Counting(5_000, lambda i: gemini(i) if i % 3 else evo(i))
    ahead = received = 0
    async with client(sim, poll=IMMEDIATE) as a, client(sim, "evolink", poll=IMMEDIATE) as e:
        apis = FakeApi(a), FakeApi(e)
        async with omnivid.map_many([a, e], source, max_in_flight=16, prefetch=8) as outcomes:
            async for _ in outcomes:
                received += 1
                ahead = max(ahead, source.pulled - received)
    assert received == 5_000 and sum(api.submits for api in apis) == 5_000
    assert ahead <= 2 * (16 + 8 + 8) + OUTCOME_BUFFER + 2


async def test_an_input_error_raises_after_the_jobs_taken(sim: Simulator) -> None:
    """If the input raises, the jobs already routed finish, then the iterator raises it."""

    def source() -> Iterator[tuple[str, omnivid.VideoRequest]]:
        yield from mixed(4)
        raise RuntimeError("input broke")

    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], source()) as outcomes,
    ):
        got = []
        with pytest.raises(RuntimeError, match="input broke"):
            async for outcome in outcomes:
                got.append(outcome)
    assert len(got) == 4 and all(o.ok for o in got)


async def test_a_bad_input_item_raises_after_the_others(sim: Simulator) -> None:
    """An item that is not a request stops the input, like client.map."""
    items: list[Any] = [gemini(0), "not a request", evo(2)]
    async with (
        client(sim) as a,
        client(sim, "evolink") as e,
        omnivid.map_many([a, e], items) as outcomes,
    ):
        got = []
        with pytest.raises(ValidationError, match=r"requests\[1\]"):
            async for outcome in outcomes:
                got.append(outcome)
    assert [o.key for o in got] == [0]


# -- misuse ---------------------------------------------------------------------------------------
async def test_two_clients_for_one_provider_are_refused(sim: Simulator) -> None:
    """One client per provider: a second one is a ConfigurationError naming it."""
    async with client(sim) as a, client(sim) as b:
        with pytest.raises(ConfigurationError, match="two clients for apimart"):
            omnivid.map_many([a, b], mixed(2))


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [
        ("max_cost", {"evolnk": 800}, "evolnk"),
        ("max_in_flight", {"apimart": 0}, "max_in_flight"),
        ("max_in_flight", 0, "max_in_flight"),
    ],
)
async def test_bad_settings_raise_at_once(
    sim: Simulator, setting: str, value: Any, match: str
) -> None:
    """A mistyped provider name in a per-account setting, or a bad value, raises at once."""
    async with client(sim) as a, client(sim, "evolink") as e:
        with pytest.raises(ValidationError, match=match):
            omnivid.map_many([a, e], mixed(2), **{setting: value})


async def test_it_needs_async_with_and_open_clients(sim: Simulator) -> None:
    """Iterating without the block is a RuntimeError saying what to write; a closed client is
    a ConfigurationError when the block starts; a run is entered once."""
    async with client(sim) as a:
        run = omnivid.map_many([a], mixed(1))
        with pytest.raises(RuntimeError, match=r"async with omnivid\.map_many"):
            aiter(run)
    closed = client(sim, "evolink")
    with pytest.raises(ConfigurationError, match="evolink client is not open"):
        async with omnivid.map_many([closed], [evo(0)]):
            pass
    async with client(sim) as a:
        run = omnivid.map_many([a], [gemini(0)])
        async with run:
            await collect(run)
        with pytest.raises(RuntimeError, match="already run"):
            async with run:
                pass
    with pytest.raises(ConfigurationError, match="list of AsyncClient"):
        omnivid.map_many(a, mixed(1))  # type: ignore[arg-type]


def test_seen_keys_never_forget_and_rarely_imagine() -> None:
    """The Bloom filter: every key added is found; few others are (at 20,000 keys)."""
    seen = SeenKeys()
    for i in range(20_000):
        seen.add(f"key-{i}")
    assert all(f"key-{i}" in seen for i in range(20_000))
    assert sum(f"other-{i}" in seen for i in range(20_000)) < 5  # about 0.01 expected
