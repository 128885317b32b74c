"""How a batch uses its journal: matching each job with its entry, and recording its steps.

Matching a job (``JournalLink.match``), by its entry's state:

========================  ===================================================================
no entry, not_submitted   ``new``: submit it
completed/failed/cancel.  ``skip``: its outcome comes from the journal (``from_journal``)
submitted (a task id)     ``resume``: poll that task, never resubmit it
intent (no task id)       ``ambiguous``: reported (``SubmissionUnknownError``), unless
                          ``resubmit_ambiguous``, then ``new``
other request or provider ``refuse``: ``JournalConflictError`` (field ``key``)
key seen twice in a batch ``refuse``: ``JournalConflictError``
key not a str or int      ``refuse``: ``ValidationError`` (field ``key``)
========================  ===================================================================

Without a journal the same calls are no-ops (:class:`NoJournal`), so the engine never asks.
A journal shared by many workers (PostgreSQL) claims each job instead of matching it:
:class:`~omnivid.batch._shared_link.SharedLink`.

Both carry the cost the budget reserved for the job, so a rerun counts a killed run's
reservations (:meth:`JournalLink.spending`, read when the batch starts; see
:mod:`omnivid.batch._budget`).

The records that must be durable before the batch goes on (the intent before the POST, the task
id after it) are awaited (the SQLite journal group-commits them, one transaction per few
event-loop turns: :mod:`omnivid.journal._group_commit`). The rest is written without waiting.
"""

from __future__ import annotations

import logging
from typing import Literal

from .._models import Task
from ..errors import JournalConflictError, OmnividError, SubmissionUnknownError, ValidationError
from ..journal import JournalBackend, JournalEntry, Spending
from ._job import Job

__all__ = ["JournalLink", "Match", "NoJournal"]

log = logging.getLogger("omnivid")

Match = Literal["new", "skip", "resume", "ambiguous", "refuse", "held"]
"""How to go on with a job (``held``: another worker holds it, a shared journal only)."""


class NoJournal:
    """The journal of a batch without one: every job is new, nothing is recorded."""

    shared = False  # a SharedLink claims jobs instead of matching them

    def match(self, job: Job) -> tuple[Match, JournalEntry | OmnividError | None]:
        """Every job is new."""
        return "new", None

    def done(self, job: Job) -> None:
        """Nothing to forget."""

    async def intent(self, job: Job) -> OmnividError | None:
        """Nothing to record, no conflict."""
        return None

    async def submitted(self, job: Job, task: Task) -> None:
        """Nothing to record."""

    def finished(self, job: Job, task: Task, body: str | None = None) -> None:
        """Nothing to record."""

    def note(self, job: Job, message: str) -> None:
        """Nothing to record."""

    def not_submitted(self, job: Job, reason: str) -> None:
        """Nothing to record."""

    def spending(self) -> Spending:
        """Nothing spent or reserved before this batch."""
        return Spending()

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Close (and, for a shared journal, wait until what is pending is committed)."""
        self.close()


class JournalLink(NoJournal):
    """One batch's view of a journal, any :class:`~omnivid.journal.JournalBackend` (see the
    module docstring)."""

    def __init__(
        self,
        journal: JournalBackend,
        *,
        provider: str,
        run: str,
        resubmit_ambiguous: bool,
        owned: bool,
    ) -> None:
        self.journal = journal
        self.provider = provider
        self.run = run
        self.resubmit_ambiguous = resubmit_ambiguous
        self.owned = owned
        self._live: set[str] = set()
        self._known = journal.keys()  # keys with an entry when the batch started

    def match(self, job: Job) -> tuple[Match, JournalEntry | OmnividError | None]:
        """How to go on with ``job``; sets its journal key and, from its entry, its history."""
        key = job.key
        if isinstance(key, bool) or not isinstance(key, str | int):
            rule = "with a journal, keys must be strings or integers"
            return "refuse", ValidationError("key", key, rule)
        jkey = str(key)
        if jkey in self._live:
            return "refuse", _duplicate(jkey)
        # a key absent when the batch started can only have been written by this batch: it is
        # checked when its intent is written (see ``intent``), without a read per job
        entry = self.journal.get(jkey) if jkey in self._known else None
        if entry is not None:
            conflict = self._conflict(job, jkey, entry)
            if conflict is not None:
                return "refuse", conflict
        job.jkey = jkey
        self._live.add(jkey)
        if entry is None or entry.state == "not_submitted":
            return "new", entry
        job.attempts = entry.attempts
        job.task_ids = list(entry.task_ids)
        job.cost = entry.cost or 0.0
        if entry.terminal:
            return "skip", entry
        if entry.state == "submitted" and entry.task_id:
            return "resume", entry
        if self.resubmit_ambiguous:
            log.warning(
                "key %s: resubmitting a request whose earlier submit may have been accepted "
                "(fingerprint %s), as asked",
                jkey,
                job.fingerprint[:16],
            )
            return "new", entry
        return "ambiguous", SubmissionUnknownError(
            f"an earlier run recorded the intent to submit key {jkey!r} but not the "
            f"provider's answer: {self.provider} may be running (and billing) it. Not "
            f"resubmitted; check the provider's task list for request fingerprint "
            f"{job.fingerprint[:16]}, then rerun with resubmit_ambiguous=True if it is not",
            fingerprint=job.fingerprint,
            provider=self.provider,
            model=job.request.model,
        )

    def done(self, job: Job) -> None:
        """The job has its outcome: its key may not come again in this batch."""
        if job.jkey is not None:
            self._live.discard(job.jkey)

    async def intent(self, job: Job) -> OmnividError | None:
        """Commit the intent (before the POST); a conflict if the key, new when the batch
        started, was already used by another job of this batch."""
        if job.jkey is None:
            return None
        new = job.jkey not in self._known and not job.journaled
        written = await self.journal.write_intent(
            job.jkey,
            job.request,
            provider=self.provider,
            fingerprint=job.fingerprint,
            run=self.run,
            new=new,
            request_json=job.request_json,
            reserved=job.reserved,
        )
        if not written:
            self._live.discard(job.jkey)
            job.jkey = None  # the entry is the other job's: leave it alone
            return _duplicate(str(job.key))
        job.journaled = True
        return None

    async def submitted(self, job: Job, task: Task) -> None:
        """Commit the task id (right after the POST), with the cost now reserved for it."""
        if job.jkey is not None:
            await self.journal.write_submitted(
                job.jkey, task, task_ids=job.task_ids, attempts=job.attempts, reserved=job.reserved
            )

    def finished(self, job: Job, task: Task, body: str | None = None) -> None:
        """Commit a terminal task and what the job cost (``body``: the response text the task
        was read from, kept as it is)."""
        if job.jkey is not None:
            self.journal.record_finished(job.jkey, task, cost=job.cost, body=body)

    def note(self, job: Job, message: str) -> None:
        """Commit an error note (the state stays)."""
        if job.jkey is not None:
            self.journal.record_error(job.jkey, message)

    def not_submitted(self, job: Job, reason: str) -> None:
        """Commit that the job never reached the provider."""
        if job.jkey is not None:
            self.journal.record_not_submitted(
                job.jkey,
                job.request,
                provider=self.provider,
                reason=reason,
                fingerprint=job.fingerprint,
                run=self.run,
            )

    def spending(self) -> Spending:
        """What the journal counts against this provider's budget (earlier runs)."""
        return self.journal.spending(self.provider)

    def close(self) -> None:
        """Commit what is pending; close the journal if this batch opened it."""
        if self.owned:
            self.journal.close()
        elif not self.journal.closed:
            self.journal.flush()

    def _conflict(self, job: Job, jkey: str, entry: JournalEntry) -> JournalConflictError | None:
        if entry.run == self.run and entry.state != "not_submitted":
            return _duplicate(jkey)
        if entry.fingerprint != job.fingerprint or entry.provider != self.provider:
            return JournalConflictError(
                "key",
                jkey,
                f"the journal already holds a different request under this key "
                f"({entry.provider} {entry.model}, fingerprint {entry.fingerprint[:16]}, "
                f"state {entry.state}); use a new key or a new journal",
                provider=self.provider,
                model=job.request.model,
            )
        return None


def _duplicate(jkey: str) -> JournalConflictError:
    return JournalConflictError(
        "key", jkey, "used by two jobs of the same batch; keys must be unique in a journal"
    )
