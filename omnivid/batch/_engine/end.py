"""Ending jobs: each job's one :class:`~omnivid.Outcome`, the journal record and the budget
settlement that go with it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
import anyio.abc

from ..._aio import clock as _clock
from ..._models import Task, TaskStatus
from ...errors import (
    OmnividError,
    TaskFailedError,
)
from ...journal import JournalEntry
from .._job import Job
from .._outcome import EventKind, Outcome
from .state import EngineState

log = logging.getLogger("omnivid")

__all__ = ["Ending"]


class Ending(EngineState):
    """Delivers outcomes (``_end``) and the records each kind of ending leaves."""

    def _release_reservation(self, job: Job) -> None:
        if job.reserved:
            self.budget.release(job.reserved, key=job.jkey)
            job.reserved = 0.0

    def _hold(self, job: Job, worker: str | None) -> None:
        """Another worker holds ``job`` (a shared journal): wait for its end outside the
        window (see :mod:`.shared`); ``worker`` holds it."""
        assert job.jkey is not None
        self.window.release()  # taken again when it is delivered (a held job costs no room)
        job.phase = "held"
        self._held[job.jkey] = job
        self._held_wake.set()
        self.events.emit("held", job.key, None, worker=worker)

    def _hand_over(self, job: Job) -> None:
        """Another worker claimed ``job`` (its lease was lost): this batch stops working on it
        (its slot, reservation and place in the schedule go) and waits for its end."""
        job.gen += 1  # its schedule entries are void
        task = job.task
        if task is not None:
            self._by_task.pop(task.id, None)
        if job.reserved:
            self.budget.hand_over(job.reserved)
            job.reserved = 0.0
        self.slots.release()
        if job.zombie:  # its outcome is out already
            return
        self._hold(job, job.worker)

    def _end_failed(self, job: Job, task: Task, body: str | None = None) -> None:
        self._journal.finished(job, task, body)
        reason = self.provider.classify_failure(task)
        self._end(
            job, task=task, error=TaskFailedError(task), kind="failed", detail={"reason": reason}
        )

    def _end_poll_error(self, job: Job, exc: OmnividError) -> None:
        task = job.task
        assert task is not None
        self._by_task.pop(task.id, None)
        if job.reserved:  # the task may still run and be billed: its reservation is spent
            job_total = job.cost + job.reserved
            self.budget.settle(job.reserved, job.reserved, key=job.jkey, total=job_total)
            job.reserved = 0.0
        self.slots.release()
        if exc.task_id is None:
            exc.task_id = task.id
        self._journal.note(job, f"polling failed: {exc}")
        if not job.zombie:
            self._end(job, task=task, error=exc, kind="failed", detail={"reason": "poll"})

    def _end_not_submitted(self, job: Job, error: OmnividError) -> None:
        self._journal.not_submitted(job, str(error))
        self._end(job, task=job.task, error=error, kind="not_submitted")

    def _end_from_journal(self, job: Job, entry: JournalEntry) -> None:
        task = entry.to_task()
        error: OmnividError | None = None
        if task is not None and task.status is not TaskStatus.COMPLETED:
            error = TaskFailedError(task)
        self._counts["from_journal"] += 1
        self._end(job, task=task, error=error, kind="skipped", from_journal=True)

    def _end(
        self,
        job: Job,
        *,
        task: Task | None = None,
        error: OmnividError | None = None,
        kind: EventKind,
        detail: dict[str, Any] | None = None,
        from_journal: bool = False,
    ) -> None:
        """Deliver the job's one outcome."""
        job.phase = "done"
        job.completed_at = _clock.now()
        self._live.pop(job.serial, None)
        self._journal.done(job)
        if kind not in ("completed", "skipped"):
            self._counts["failed"] += 1
        outcome = Outcome(
            key=job.key,
            request=job.request,
            task=task,
            error=error,
            attempts=job.attempts,
            task_ids=tuple(job.task_ids),
            cost=job.cost,
            queued_at=job.queued_at,
            submitted_at=job.submitted_at,
            completed_at=job.completed_at,
            from_journal=from_journal,
            worker=job.worker,
            fingerprint=job.fp,
        )
        if self.events.active:
            info = dict(detail or {})
            if error is not None:
                info.setdefault("error", str(error))
            self.events.emit(kind, job.key, outcome.task_id, **info)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(outcome)
        if self._input_done and not self._live:
            self._idle.set()
