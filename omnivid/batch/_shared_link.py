"""How a batch uses a journal shared by many workers (:class:`~omnivid.journal.SharedJournal`,
PostgreSQL): each job is **claimed** when it is matched, so one worker at a time holds it.

Matching a job (``SharedLink.claim``), by what the claim found:

=========================  ==================================================================
claimed, never submitted   ``new``: submit it (this worker holds its lease)
claimed, a task id         ``resume``: poll that task (its holder's lease ran out)
claimed, an intent         only with ``resubmit_ambiguous`` (the claim asks for it): ``new``
done                       ``skip``: its outcome comes from the journal (``from_journal``,
                           ``worker``: the worker that ran it)
held                       ``held``: another worker's lease is live; the batch waits for the
                           job's end, or for that lease to run out (:mod:`._engine.shared`)
ambiguous                  ``ambiguous``: an intent whose holder's lease ran out: its submit
                           may have been accepted. Reported (``SubmissionUnknownError``),
                           never resubmitted unless ``resubmit_ambiguous``
conflict                   ``refuse``: the key holds another request (``JournalConflictError``)
=========================  ==================================================================

The records are the protocol's (:class:`~omnivid.batch._journal_link.JournalLink`), fenced by
the claim's token: once another worker took the job over, this worker's writes for it are
refused (``LeaseLostError``) and the job is handed to the waiting side.
"""

from __future__ import annotations

import logging

from .._models import Task
from ..errors import DatabaseUnavailableError, OmnividError, SubmissionUnknownError, ValidationError
from ..journal import JobRow, JournalEntry, LeaseLostError, SharedJournal
from ._job import Job
from ._journal_link import JournalLink, Match, _duplicate

__all__ = ["SharedLink"]

log = logging.getLogger("omnivid")


class SharedLink(JournalLink):
    """One batch's view of a shared journal (see the module docstring)."""

    shared = True

    def __init__(
        self,
        journal: SharedJournal,
        *,
        provider: str,
        run: str,
        resubmit_ambiguous: bool,
        owned: bool,
    ) -> None:
        super().__init__(
            journal,
            provider=provider,
            run=run,
            resubmit_ambiguous=resubmit_ambiguous,
            owned=owned,
        )
        self.shared_journal = journal
        self.jobs: dict[str, Job] = {}  # by journal key: the jobs this batch matched

    @property
    def worker(self) -> str:
        """This worker's name in the journal's claims."""
        return self.shared_journal.worker

    def match(self, job: Job) -> tuple[Match, JournalEntry | OmnividError | None]:
        """Not used: a shared journal's jobs are claimed (:meth:`claim`)."""
        raise RuntimeError("a shared journal's jobs are matched by claim()")

    async def claim(
        self, job: Job, *, again: bool = False
    ) -> tuple[Match, JournalEntry | JobRow | OmnividError | None]:
        """Claim ``job`` and say how to go on with it (see the module docstring); ``again``:
        a job this batch matched before (it waited while another worker held it)."""
        key = job.key
        if isinstance(key, bool) or not isinstance(key, str | int):
            rule = "with a journal, keys must be strings or integers"
            return "refuse", ValidationError("key", key, rule)
        jkey = str(key)
        if not again:
            if jkey in self.jobs:
                return "refuse", _duplicate(jkey)
            self.jobs[jkey] = job
            job.jkey = jkey
        found = await self.shared_journal.claim(
            jkey,
            job.request,
            provider=self.provider,
            fingerprint=job.fingerprint,
            request_json=job.request_json,
            ambiguous=self.resubmit_ambiguous,
        )
        row, entry = found.row, found.entry
        if found.status == "conflict":
            self._forget(job)
            conflict = self._conflict(job, jkey, entry)
            return "refuse", conflict or _duplicate(jkey)
        if found.status == "held":
            job.worker = row.worker
            return "held", row
        job.attempts = entry.attempts
        job.task_ids = list(entry.task_ids)
        job.cost = entry.cost or 0.0
        if found.status == "done":
            job.worker = row.worker
            return "skip", entry
        if found.status == "ambiguous":
            job.worker = row.worker
            return "ambiguous", self._ambiguous(job, jkey, row)
        job.worker = self.worker
        job.journaled = True  # the claim wrote its row: the intent is not a new key's
        if entry.state == "submitted" and entry.task_id:
            return "resume", entry
        if entry.state == "intent":  # claimed with ambiguous=True: resubmitted, as asked
            log.warning(
                "key %s: resubmitting a request whose earlier submit may have been accepted "
                "(fingerprint %s, left by worker %s), as asked",
                jkey,
                job.fingerprint[:16],
                row.worker,
            )
        return "new", entry

    def done(self, job: Job) -> None:
        """The job has its outcome."""
        if job.jkey is not None:
            self.jobs.pop(job.jkey, None)

    async def intent(self, job: Job) -> OmnividError | None:
        """Commit the intent, fenced by the claim: a ``LeaseLostError`` (returned) when another
        worker claimed the job since."""
        try:
            return await super().intent(job)
        except LeaseLostError as exc:
            job.lost = True
            return exc

    async def submitted(self, job: Job, task: Task) -> None:
        """Commit the task id, fenced: ``LeaseLostError`` (raised) when another worker claimed
        the job since (the id is kept in the row's task ids). A database that does not answer
        is logged: the task goes on being polled (a later worker finds the intent ambiguous:
        never resubmitted)."""
        try:
            await super().submitted(job, task)
        except DatabaseUnavailableError as exc:
            log.warning("key %s: task %s not recorded (%s)", job.jkey, task.id, exc)

    def lost(self, key: str) -> Job | None:
        """The job of ``key``, which another worker claimed (None if it has its outcome)."""
        job = self.jobs.get(key)
        if job is not None:
            job.lost = True
        return job

    def _forget(self, job: Job) -> None:
        if job.jkey is not None:
            self.jobs.pop(job.jkey, None)
        job.jkey = None

    def _ambiguous(self, job: Job, jkey: str, row: JobRow) -> SubmissionUnknownError:
        return SubmissionUnknownError(
            f"worker {row.worker} recorded the intent to submit key {jkey!r} but not the "
            f"provider's answer, and its lease ran out: {self.provider} may be running (and "
            f"billing) it. Not resubmitted; check the provider's task list for request "
            f"fingerprint {job.fingerprint[:16]}, then rerun with resubmit_ambiguous=True if "
            "it is not",
            fingerprint=job.fingerprint,
            provider=self.provider,
            model=job.request.model,
        )

    async def aclose(self) -> None:
        """Commit what is pending; close the journal if this batch opened it."""
        if self.owned:
            await self.shared_journal.aclose()
        else:
            await self.shared_journal.aflush()
