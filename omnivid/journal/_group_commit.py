"""Group commit: the journal writes of a few event-loop turns share one SQLite transaction.

A batch must commit each job's intent before its POST and its task id right after; with
hundreds of jobs in flight, one transaction per record would spend most of the journal's time
in commits (each rewrites every page it touched into the WAL, a few µs per page, however
little of the page changed). Instead the first writer becomes the *leader*: it yields for
``turns`` event-loop turns (:data:`TURNS` by default), so every job that reaches a write
point meanwhile adds its statement, then commits them all in one transaction and wakes the
others::

    job A: write(a) ── leader ── turn ── turn ── … ── commit [a, b, c, …] ── return
    job B:     write(b) ── wait ──────────────────────────────────────────── return
    job C:                     write(c) ── wait ──────────────────────────── return

Nobody returns before its statement is committed, so "committed before the POST" holds for
every job as before. Why several turns: under load a turn brings a batch only a few answers
(about 12 statements a commit with one turn in B5's workload, 28 with 4 turns, 42 with 8), and
the pages a commit rewrites are shared by neighbouring jobs, so fewer, larger commits write
each page fewer times. A loop with nothing else to run goes through its turns in
microseconds, so a lone writer is not held up. What grouping changes: between the POST's
answer and the task id's commit there are now at most ``turns`` more loop turns, so a SIGKILL
in them leaves the job in ``intent`` (reported as ambiguous on a rerun, never resubmitted
unasked) where before the window was the answer's own parsing.

Cancellation: a statement handed in is always committed, even when its writer is cancelled
while it waits, and the leader commits the group before its own cancellation goes on (no cancel
scope per write: they would cost more than the commit saves). A writer cancelled while waiting
therefore leaves its record in the journal as if it had returned: an intent whose POST never
went out is reported as an ambiguous submit, the safe reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from .._aio.waiters import waiter, wake

__all__ = ["TURNS", "GroupCommit", "Statement", "Writer"]

Statement = tuple[str, tuple[Any, ...]]
"""One SQL statement and its parameters, as a journal's ``write_many`` takes them."""


class Writer(Protocol):
    """A journal that commits statements in one transaction."""

    def write_many(self, statements: Sequence[Statement]) -> list[bool]:
        """Commit ``statements`` together; for each, whether it changed a row."""
        ...


TURNS = 8
"""Event-loop turns a group stays open for (see the module docstring)."""


class _Group:
    """The statements of one turn, how their commit went, and who waits for it."""

    __slots__ = ("changed", "error", "statements", "waiters")

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self.changed: list[bool] = []
        self.error: BaseException | None = None
        self.waiters: list[asyncio.Future[None]] = []  # one per waiting writer (_waiters)

    def result(self, index: int) -> bool:
        """Whether statement ``index`` changed a row; raises the group's commit error."""
        if self.error is not None:
            raise self.error
        return self.changed[index]


class GroupCommit:
    """Commits the statements written to it within ``turns`` loop turns as one transaction of
    ``journal``."""

    def __init__(self, journal: Writer, *, turns: int = TURNS) -> None:
        if turns < 1:
            raise ValueError(f"turns={turns}: a group stays open for at least one turn")
        self.journal = journal
        self.turns = turns
        self._open: _Group | None = None
        self.commits = 0  # transactions committed (for tests and statistics)
        self.statements = 0  # statements committed

    async def write(self, statement: Statement) -> bool:
        """Commit ``statement`` (with those of this turn); whether it changed a row.

        Raises what the commit raised (for every statement of the failed group).
        """
        group = self._open
        if group is None:
            group = self._open = _Group()
            group.statements.append(statement)
            try:
                for _ in range(self.turns):
                    await asyncio.sleep(0)  # let the writers of the next turns join
            finally:  # committed even when cancelled: the others wait for it
                self._open = None
                self._commit(group)
            return group.result(0)
        index = len(group.statements)
        group.statements.append(statement)
        committed = waiter()
        group.waiters.append(committed)
        await committed
        return group.result(index)

    def _commit(self, group: _Group) -> None:
        try:
            group.changed = self.journal.write_many(group.statements)
        except Exception as exc:
            group.error = exc
        else:
            self.commits += 1
            self.statements += len(group.statements)
        finally:
            for committed in group.waiters:
                wake(committed)  # (a cancelled writer is skipped: its record is kept anyway)
