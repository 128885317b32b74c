"""map(..., journal=...): intent before the submit, task id right after, and resuming."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from journalhelp import client, gemini, jobs, run

import omnivid
from omnivid import Journal
from omnivid.errors import (
    BudgetExceededError,
    JournalConflictError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
)
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

LONG = "[[duration=300]]"


def _state(path: Path, key: str) -> tuple[str, str | None]:
    """(state, task_id) of ``key`` as another connection (another process) would read it."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT state, task_id FROM jobs WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return (row[0], row[1]) if row else ("absent", None)


async def test_intent_is_committed_before_the_post(sim: Simulator, journal_path: Path) -> None:
    """When the submit goes out, the journal file already holds the job's intent."""
    seen: list[tuple[str, str | None]] = []
    async with client(sim) as c:
        submit = c.submit

        async def spying_submit(request: omnivid.VideoRequest, **kw: Any) -> omnivid.Task:
            seen.append(_state(journal_path, "k0"))
            return await submit(request, **kw)

        c.submit = spying_submit  # type: ignore[method-assign]
        async with c.map(jobs(1), journal=journal_path) as outcomes:
            async for _ in outcomes:
                pass
    assert seen == [("intent", None)]


async def test_task_id_is_committed_right_after(sim: Simulator, journal_path: Path) -> None:
    """By the first poll, the journal file holds the task id the submit returned."""
    seen: list[tuple[str, str | None]] = []
    async with client(sim) as c:
        read = c.transport.read_task

        async def spying_read(task_id: str, **kw: Any) -> tuple[omnivid.Task, str]:
            seen.append(_state(journal_path, "k0"))
            return await read(task_id, **kw)

        c.transport.read_task = spying_read  # type: ignore[method-assign]
        async with c.map(jobs(1), journal=journal_path) as outcomes:
            (outcome,) = [o async for o in outcomes]
    assert seen and seen[0] == ("submitted", outcome.task_id)
    assert _state(journal_path, "k0") == ("completed", outcome.task_id)


async def test_a_batch_keeps_the_response_it_read_the_finished_task_from(
    sim: Simulator, journal_path: Path
) -> None:
    """A finished job's entry holds the task-status response, which reads back as its task."""
    async with client(sim) as c, c.map(jobs(2), journal=journal_path) as outcomes:
        done = {o.key: o async for o in outcomes}
    with omnivid.Journal.open(journal_path) as journal:
        for key, outcome in done.items():
            entry = journal.get(key)
            assert entry is not None and entry.task_form == "body"
            assert entry.task is not None and entry.task["data"]["id"] == outcome.task_id
            back = entry.to_task()
            assert back is not None and outcome.task is not None
            assert (back.id, back.status, back.videos) == (
                outcome.task.id,
                outcome.task.status,
                outcome.task.videos,
            )


async def test_finished_jobs_are_skipped(sim: Simulator, journal_path: Path) -> None:
    """A rerun yields finished jobs from the journal without any request."""
    items = [*jobs(4), ("bad", gemini(9, "[[fail:moderation]]"))]
    first = await run(sim, items, journal=journal_path)
    requests = len(sim.request_log)
    again = await run(sim, items, journal=journal_path)
    assert len(sim.request_log) == requests
    assert all(o.from_journal for o in again.values())
    assert {k: o.task_id for k, o in again.items()} == {k: o.task_id for k, o in first.items()}
    assert all(again[f"k{i}"].ok for i in range(4)) and again["k0"].cost == pytest.approx(1.0)
    assert isinstance(again["bad"].error, TaskFailedError)


async def test_submitted_jobs_are_resumed_not_resubmitted(
    sim: Simulator, journal_path: Path
) -> None:
    """Tasks left running by an interrupted run are polled by the rerun, never resubmitted."""
    async with client(sim) as c:
        with anyio.move_on_after(0.05):
            async with c.map(jobs(6, LONG), journal=journal_path, max_in_flight=3) as out:
                async for _ in out:
                    pass
    abandoned = {str(k): v for k, v in out.abandoned.items()}
    assert len(abandoned) == 3 and all(_state(journal_path, k)[0] == "submitted" for k in abandoned)
    events: list[omnivid.Event] = []
    again = await run(sim, jobs(6, LONG), journal=journal_path, on_event=events.append)
    assert all(o.ok for o in again.values())
    assert {k: again[k].task_id for k in abandoned} == abandoned
    assert {e.task_id for e in events if e.kind == "resumed"} == set(abandoned.values())
    assert set(sim.stats.tasks_by_fingerprint.values()) == {1} and len(sim.stats.tasks) == 6


async def test_ambiguous_intent_is_reported_not_resubmitted(
    sim: Simulator, journal_path: Path
) -> None:
    """An intent without a task id (a crash mid-submit) comes back ambiguous; nothing sent."""
    request = gemini(0)
    with Journal.open(journal_path) as j:
        j.record_intent("k0", request, provider="apimart", run="crashed-run")
    got = await run(sim, [("k0", request)], journal=journal_path)
    error = got["k0"].error
    assert isinstance(error, SubmissionUnknownError) and error.fingerprint == request.fingerprint()
    assert sim.stats.submits == 0 and _state(journal_path, "k0") == ("intent", None)


async def test_resubmit_ambiguous_submits_it(sim: Simulator, journal_path: Path) -> None:
    """With resubmit_ambiguous=True the ambiguous job is submitted."""
    request = gemini(0)
    with Journal.open(journal_path) as j:
        j.record_intent("k0", request, provider="apimart", run="crashed-run")
    got = await run(sim, [("k0", request)], journal=journal_path, resubmit_ambiguous=True)
    assert got["k0"].ok and sim.stats.submits == 1


async def test_lost_response_stays_ambiguous_across_runs(
    sim: Simulator, journal_path: Path
) -> None:
    """A submit whose answer was lost is ambiguous in its run and in the next one."""
    items = [("k0", gemini(0, "[[fault:lost-response]]"))]
    first = await run(sim, items, journal=journal_path)
    second = await run(sim, items, journal=journal_path)
    assert first["k0"].ambiguous and second["k0"].ambiguous
    assert sim.stats.submits == 1


async def test_changed_request_under_a_key_is_a_conflict(
    sim: Simulator, journal_path: Path
) -> None:
    """Reusing a key for a different request is a JournalConflictError outcome, not a submit."""
    await run(sim, jobs(2), journal=journal_path)
    submits = sim.stats.submits
    changed = [("k0", gemini(0, "a different prompt")), ("k9", gemini(9))]
    got = await run(sim, changed, journal=journal_path)
    conflict = got["k0"].error
    assert isinstance(conflict, JournalConflictError) and conflict.field == "key"
    assert isinstance(conflict, ValidationError) and got["k9"].ok
    assert sim.stats.submits == submits + 1


async def test_duplicate_keys_in_one_batch(sim: Simulator, journal_path: Path) -> None:
    """Two jobs with one key in the same journaled batch: the second is a conflict."""
    got_list: list[omnivid.Outcome] = []
    async with (
        client(sim) as c,
        c.map([("k0", gemini(0)), ("k0", gemini(0))], journal=journal_path) as out,
    ):
        got_list = [o async for o in out]
    errors = [o.error for o in got_list]
    assert sum(isinstance(e, JournalConflictError) for e in errors) == 1
    assert sim.stats.submits == 1


async def test_a_requeued_submit_keeps_its_entry(sim: Simulator, journal_path: Path) -> None:
    """A submit refused with 429 more often than the transport retries is sent again later
    under the same journal entry (not mistaken for a duplicate key)."""
    request = gemini(0, "[[fault:429@submit*6]]")
    got = await run(sim, [("k0", request)], journal=journal_path)
    assert got["k0"].ok and sim.stats.rate_limited == 6
    assert _state(journal_path, "k0") == ("completed", got["k0"].task_id)


async def test_keys_must_be_strings_or_integers(sim: Simulator, journal_path: Path) -> None:
    """With a journal, a tuple key is a ValidationError outcome naming the key."""
    got = await run(sim, [(("a", 1), gemini(0))], journal=journal_path)
    error = got[("a", 1)].error
    assert isinstance(error, ValidationError) and error.field == "key"
    assert sim.stats.submits == 0


async def test_not_submitted_jobs_run_on_the_next_run(sim: Simulator, journal_path: Path) -> None:
    """A job refused by the budget is submitted by a rerun with more budget."""
    first = await run(sim, jobs(2), journal=journal_path, max_cost=1.0)
    refused = [k for k, o in first.items() if isinstance(o.error, BudgetExceededError)]
    assert len(refused) == 1 and _state(journal_path, refused[0])[0] == "not_submitted"
    again = await run(sim, jobs(2), journal=journal_path)
    assert again[refused[0]].ok and not again[refused[0]].from_journal


async def test_a_timed_out_job_is_finished_later(sim: Simulator, journal_path: Path) -> None:
    """A deadline does not lose the task: a rerun takes its result without resubmitting."""
    items = [("k0", gemini(0, "[[duration=200]]"))]
    first = await run(sim, items, journal=journal_path, deadline=50.0)
    assert isinstance(first["k0"].error, TaskTimeoutError)
    await anyio.sleep(0.25)  # the task ends at the provider (200 simulated s)
    again = await run(sim, items, journal=journal_path)
    assert again["k0"].ok and again["k0"].task_id == first["k0"].task_id
    assert sim.stats.submits == 1


async def test_a_journal_object_is_left_open(
    sim: Simulator, journal: Journal, journal_path: Path
) -> None:
    """A Journal passed in is left open, with everything committed when the batch ends."""
    await run(sim, jobs(1), journal=journal)
    entry = journal.get("k0")
    assert entry is not None and entry.state == "completed" and not journal.closed
    assert _state(journal_path, "k0")[0] == "completed"  # visible to another connection


async def test_the_api_key_is_never_stored(sim: Simulator, journal_path: Path) -> None:
    """No journal file (database, WAL) contains the API key."""
    await run(sim, [*jobs(3), ("x", gemini(9, "[[fault:lost-response]]"))], journal=journal_path)
    files = [p for p in journal_path.parent.iterdir() if p.name.startswith(journal_path.name)]
    assert files and all(sim.api_key.encode() not in p.read_bytes() for p in files)


async def test_two_providers_share_a_journal(sim: Simulator, journal: Journal) -> None:
    """Concurrent maps of two providers can share one Journal."""
    evo = omnivid.VideoRequest(
        model="gemini-omni-flash-reference-to-video",
        prompt="a cat",
        images=("https://example.com/cat.png",),
    )
    results: dict[str, dict[Any, omnivid.Outcome]] = {}

    async def go(provider: str, items: Any) -> None:
        async with client(sim, provider) as c, c.map(items, journal=journal) as out:
            results[provider] = {o.key: o async for o in out}

    async with anyio.create_task_group() as tg:
        tg.start_soon(go, "apimart", jobs(3))
        tg.start_soon(go, "evolink", [("e0", evo)])
    assert all(o.ok for r in results.values() for o in r.values())
    assert journal.counts() == {"completed": 4}
