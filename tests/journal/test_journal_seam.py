"""The journal's seam: a backend written against ``JournalBackend`` alone runs and resumes a
batch, with no change in ``omnivid.batch`` (as the PostgreSQL backend will)."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
from journalhelp import jobs, run

from omnivid import Task, VideoRequest
from omnivid.journal import OPEN_STATES, JournalBackend, JournalEntry, Spending
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


class MemoryJournal:
    """A journal kept in a dict: the smallest backend of the protocol."""

    def __init__(self) -> None:
        self.rows: dict[str, JournalEntry] = {}
        self.closed = False
        self.calls: list[str] = []

    def keys(self) -> set[str]:
        return set(self.rows)

    def get(self, key: str | int) -> JournalEntry | None:
        return self.rows.get(str(key))

    async def write_intent(
        self,
        key: str,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str,
        run: str,
        new: bool,
        request_json: str | None = None,
        reserved: float = 0.0,
    ) -> bool:
        self.calls.append("intent")
        if new and key in self.rows:
            return False
        now = time.time()
        self.rows[key] = JournalEntry(
            key=key, fingerprint=fingerprint, provider=provider, model=request.model,
            request=request.to_dict(), state="intent", task_id=None, task_ids=(), attempts=0,
            status=None, cost=None, task=None, task_form=None, error=None, downloads=(),
            run=run, created_at=now, updated_at=now, reserved=reserved,
        )  # fmt: skip
        return True

    async def write_submitted(
        self,
        key: str,
        task: Task,
        *,
        task_ids: list[str],
        attempts: int,
        reserved: float | None = None,
    ) -> None:
        self.calls.append("submitted")
        entry = self.rows[key]
        self.rows[key] = attrs.evolve(
            entry, state="submitted", task_id=task.id, task_ids=tuple(task_ids),
            attempts=attempts, reserved=entry.reserved if reserved is None else reserved,
        )  # fmt: skip

    def spending(self, provider: str) -> Spending:
        mine = [e for e in self.rows.values() if e.provider == provider]
        return Spending(
            spent=sum(e.cost or 0.0 for e in mine),
            reserved=sum(e.reserved or 0.0 for e in mine if e.state in OPEN_STATES),
        )

    def record_finished(
        self, key: str | int, task: Task, *, cost: float, body: str | None = None
    ) -> None:
        self.calls.append("finished")
        raw: Any = task.raw
        self.rows[str(key)] = attrs.evolve(
            self.rows[str(key)], state=task.status.value, status=task.status.value, cost=cost,
            task=raw, task_form="provider",
        )  # fmt: skip

    def record_error(self, key: str | int, message: str) -> None:
        self.rows[str(key)] = attrs.evolve(self.rows[str(key)], error=message)

    def record_not_submitted(self, key: str | int, request: VideoRequest, **_: Any) -> None:
        self.calls.append("not_submitted")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_memory_journal_is_a_backend() -> None:
    """The dict-backed journal satisfies the protocol a batch asks for."""
    assert isinstance(MemoryJournal(), JournalBackend)


async def test_a_second_backend_records_each_step(sim: Simulator) -> None:
    """A batch records intent, task id and result through the protocol, in that order."""
    journal = MemoryJournal()
    outcomes = await run(sim, jobs(3), journal=journal)
    assert all(o.ok for o in outcomes.values())
    assert sorted(journal.calls) == sorted(["intent", "submitted", "finished"] * 3)
    assert {e.state for e in journal.rows.values()} == {"completed"}
    assert not journal.closed  # the caller's journal stays open


async def test_a_second_backend_resumes_without_resubmitting(sim: Simulator) -> None:
    """A rerun on the same backend takes finished jobs from it: no submit is sent again."""
    journal = MemoryJournal()
    await run(sim, jobs(3), journal=journal)
    submits = sim.stats.submits
    again = await run(sim, jobs(3), journal=journal)
    assert all(o.from_journal and o.ok for o in again.values())
    assert sim.stats.submits == submits
