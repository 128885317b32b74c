"""Group commit: the journal records of a few event-loop turns share one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from journalhelp import client, gemini, jobs

import omnivid
from omnivid import Journal
from omnivid.journal._group_commit import GroupCommit
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


def _keys(path: Path) -> dict[str, str]:
    """Every key's state, as another connection (another process) reads the file."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT key, state FROM jobs").fetchall())
    finally:
        db.close()


def _intent(journal: Journal, key: str, *, new: bool = True) -> tuple[str, tuple[Any, ...]]:
    return journal.intent_statement(key, gemini(key), provider="apimart", run="r", new=new)


async def test_writers_of_one_turn_share_one_transaction(
    journal: Journal, journal_path: Path
) -> None:
    """Ten writers started together are committed by one transaction, all of them."""
    group = GroupCommit(journal)
    results: dict[str, bool] = {}

    async def write(key: str) -> None:
        results[key] = await group.write(_intent(journal, key))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(write, f"k{i}")
    assert (group.commits, group.statements) == (1, 10)
    assert results == {f"k{i}": True for i in range(10)}
    assert _keys(journal_path) == {f"k{i}": "intent" for i in range(10)}


async def test_a_writer_arriving_turns_after_the_leader_joins_its_group(
    journal: Journal, journal_path: Path
) -> None:
    """A writer that starts a few loop turns after the first one shares its transaction."""
    group = GroupCommit(journal, turns=4)

    async def late(key: str) -> None:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        await group.write(_intent(journal, key))

    async with anyio.create_task_group() as tg:
        tg.start_soon(group.write, _intent(journal, "leader"))
        tg.start_soon(late, "late")
    assert (group.commits, group.statements) == (1, 2)
    assert _keys(journal_path) == {"leader": "intent", "late": "intent"}


async def test_a_group_closes_after_its_turns_while_writers_keep_coming(
    journal: Journal,
) -> None:
    """Writers arriving on every turn are committed in groups of at most ``turns`` turns."""
    group = GroupCommit(journal, turns=2)
    returned: list[int] = []

    async def write_at(turn: int) -> None:
        for _ in range(turn):
            await anyio.lowlevel.checkpoint()
        await group.write(_intent(journal, f"k{turn}"))
        returned.append(turn)

    async with anyio.create_task_group() as tg:
        for turn in range(12):
            tg.start_soon(write_at, turn)
    assert sorted(returned) == list(range(12))
    assert group.statements == 12
    assert 4 <= group.commits <= 6  # one per two or three turns, never one for all


def test_a_group_must_stay_open_for_a_turn(journal: Journal) -> None:
    """``turns=0`` is refused with the rule."""
    with pytest.raises(ValueError, match="turns=0: a group stays open for at least one turn"):
        GroupCommit(journal, turns=0)


async def test_each_writer_learns_whether_its_own_row_changed(journal: Journal) -> None:
    """In one group, a second new intent for the same key reports that it wrote nothing."""
    group = GroupCommit(journal)
    results: list[bool] = []

    async def write() -> None:
        results.append(await group.write(_intent(journal, "same")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        tg.start_soon(write)
    assert group.commits == 1
    assert sorted(results) == [False, True]


async def test_nobody_returns_before_the_commit(journal: Journal, journal_path: Path) -> None:
    """When a writer's call returns, its row is already readable from another connection."""
    group = GroupCommit(journal)
    seen: dict[str, str | None] = {}

    async def write(key: str) -> None:
        await group.write(_intent(journal, key))
        seen[key] = _keys(journal_path).get(key)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(write, f"k{i}")
    assert seen == {f"k{i}": "intent" for i in range(5)}


async def test_a_failed_commit_reaches_every_writer_and_keeps_nothing(
    journal: Journal, journal_path: Path
) -> None:
    """A broken statement fails its whole group, for every writer; the journal stays usable."""
    group = GroupCommit(journal)
    errors: list[BaseException] = []

    async def write(statement: tuple[str, tuple[Any, ...]]) -> None:
        try:
            await group.write(statement)
        except sqlite3.Error as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, _intent(journal, "k0"))
        tg.start_soon(write, ("UPDATE no_such_table SET x = 1", ()))
    assert len(errors) == 2
    assert _keys(journal_path) == {}
    assert await group.write(_intent(journal, "k1")) is True
    assert _keys(journal_path) == {"k1": "intent"}


async def test_a_cancelled_leader_still_commits_its_group(
    journal: Journal, journal_path: Path
) -> None:
    """Cancelling the first writer while it waits for the others commits the group anyway."""
    group = GroupCommit(journal)
    follower: list[bool] = []

    async def lead(scope: anyio.CancelScope) -> None:
        with scope:
            await group.write(_intent(journal, "leader"))

    async def follow() -> None:
        follower.append(await group.write(_intent(journal, "follower")))

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(lead, scope)
        tg.start_soon(follow)
        await anyio.lowlevel.checkpoint()  # both have handed in their statements
        scope.cancel()
    assert follower == [True]
    assert _keys(journal_path) == {"leader": "intent", "follower": "intent"}


async def test_a_cancelled_follower_is_committed_and_the_others_still_return(
    journal: Journal, journal_path: Path
) -> None:
    """A writer cancelled while it waits keeps its record; the other writers still return."""
    group = GroupCommit(journal)
    returned: list[str] = []

    async def write(key: str, scope: anyio.CancelScope) -> None:
        with scope:
            await group.write(_intent(journal, key))
            returned.append(key)

    async with anyio.create_task_group() as tg:
        cancelled = anyio.CancelScope()
        tg.start_soon(write, "leader", anyio.CancelScope())
        tg.start_soon(write, "cancelled", cancelled)
        tg.start_soon(write, "follower", anyio.CancelScope())
        await anyio.lowlevel.checkpoint()  # all three have handed in their statements
        cancelled.cancel()
    assert sorted(returned) == ["follower", "leader"]
    assert _keys(journal_path) == {k: "intent" for k in ("leader", "cancelled", "follower")}


def test_write_many_commits_pending_lazy_writes_with_it(journal: Journal) -> None:
    """Lazy records join the group's transaction: nothing is left pending after it."""
    journal.record_intent("k0", gemini(0), provider="apimart")
    journal.record_error("k0", "a lazy note")
    assert journal.write_many([_intent(journal, "k1"), _intent(journal, "k2")]) == [True, True]
    with Journal.open(journal.path) as other:
        entry = other.get("k0")
        assert entry is not None and entry.error == "a lazy note"
        assert len(other) == 3


async def test_every_submit_of_a_busy_batch_finds_its_own_intent_committed(
    sim: Simulator, journal_path: Path
) -> None:
    """With 40 jobs submitting together, each POST goes out after its own intent is on disk."""
    seen: dict[str, str | None] = {}
    by_prompt = {request.prompt: key for key, request in jobs(40)}
    async with client(sim) as c:
        submit = c.submit

        async def spying_submit(request: omnivid.VideoRequest, **kw: Any) -> omnivid.Task:
            key = by_prompt[request.prompt]
            seen[key] = _keys(journal_path).get(key)
            return await submit(request, **kw)

        c.submit = spying_submit  # type: ignore[method-assign]
        async with c.map(jobs(40), journal=journal_path, max_in_flight=40) as outcomes:
            done = [o async for o in outcomes]
    assert all(o.ok for o in done)
    assert seen == {f"k{i}": "intent" for i in range(40)}
