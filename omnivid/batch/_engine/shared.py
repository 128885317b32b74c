"""A batch on a journal shared by many workers (PostgreSQL): claims, waiting for jobs other
workers hold, the heartbeat that keeps this worker's leases, and routing a matched job.

* **Claims.** The feeder claims each job as it matches it (:mod:`omnivid.batch._shared_link`):
  a job this worker holds is submitted or resumed; a finished one is delivered from the
  journal (``from_journal``, ``worker``: who ran it); an ambiguous one is reported.
* **Held jobs.** A job another worker holds waits outside the window (it costs no room: the
  window bounds what this worker runs), in one dict. **One** task (:meth:`Sharing._watch_held`)
  reads all their rows with one query, 50 ms after a change, then at intervals doubling up to
  ``min(lease / 4, 5 s)`` while nothing changes (a job ended, a job held): a job that ended is
  delivered from the journal; one whose holder's lease ran out is claimed again (a submitted
  job is then resumed by polling, an intent left by a dead worker is reported ambiguous,
  never resubmitted unasked). So every worker's batch delivers an outcome for every job.
* **Heartbeat.** One task renews this worker's leases every ``lease / 3``
  (:meth:`Sharing._heartbeat`). A lease found lost (another worker claimed the job: this
  process stalled past its lease) is reported (a ``lease_lost`` event, a warning) and the job
  is handed over: its later writes would be refused (fencing), so this batch stops working on
  it and waits for its end like a held job.
* **The database gone.** A claim, intent or budget call that cannot reach the database stops
  every further submit (``DatabaseUnavailableError``, ``BatchStats.stopped``): the jobs not
  yet claimed end ``not_submitted`` saying so; tasks already running are still polled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ...errors import DatabaseUnavailableError, OmnividError
from ...journal import JobRow, JournalEntry
from .._job import Job
from .._journal_link import Match
from .submit import Submitting, _restated

if TYPE_CHECKING:
    from .._shared_link import SharedLink

log = logging.getLogger("omnivid")

__all__ = ["Sharing"]

_READ_CHUNK = 1000  # keys per query of the held jobs' rows
_FIRST_READ = 0.05  # seconds before the held jobs' rows are read after a change


class Sharing(Submitting):
    """Routes matched jobs; with a shared journal, claims them and waits for held ones."""

    async def _route(
        self, job: Job, match: Match, found: JournalEntry | JobRow | OmnividError | None
    ) -> None:
        """Go on with a matched job: deliver its outcome, wait for it, or give it a slot."""
        if match == "refuse":
            assert isinstance(found, OmnividError)
            self._end(job, error=found, kind="not_submitted")
            return
        if match == "skip":
            assert isinstance(found, JournalEntry)
            self._end_from_journal(job, found)
            return
        if match == "ambiguous":
            assert isinstance(found, OmnividError)
            self._counts["ambiguous"] += 1
            self._end(job, error=found, kind="ambiguous", detail={"fingerprint": job.fp})
            return
        if match == "held":
            assert isinstance(found, JobRow)
            self._hold(job, found.worker)
            return
        if not self.slots.try_acquire():
            await self.slots.acquire()
        if match == "resume":
            assert isinstance(found, JournalEntry)
            self._resume(job, found.reserved)
        else:
            self._dispatch(self._submit, job)

    @property
    def _shared(self) -> SharedLink:
        link = self._journal
        assert link.shared
        return link  # type: ignore[return-value]

    async def _claim(self, job: Job, *, again: bool = False) -> None:
        """Claim ``job`` in the shared journal and go on with it (see the module docstring)."""
        cause = self._refusals.get(None)
        if isinstance(cause, DatabaseUnavailableError):  # no claim without the database
            self._end(job, error=_restated(cause, job.request.model), kind="not_submitted")
            return
        try:
            match, found = await self._shared.claim(job, again=again)
        except DatabaseUnavailableError as exc:
            self._stop_database(exc)
            self._end(job, error=exc, kind="not_submitted")
            return
        await self._route(job, match, found)

    async def _reclaim(self, job: Job) -> None:
        """A held job's holder let it go (its lease ran out): claim it again (a worker step)."""
        await self._claim(job, again=True)

    def _stop_database(self, cause: DatabaseUnavailableError) -> None:
        """The shared journal's database is gone: no more claims or submits."""
        if None in self._refusals:
            return
        self._refusals[None] = cause
        why = f"submits stopped: {cause}"
        log.warning("%s; jobs not yet submitted end not submitted", why)
        self.stopped = why if self.stopped is None else f"{self.stopped}; {why}"

    def _start_sharing(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the heartbeat and the watch over held jobs (in the batch's task group)."""
        tg.start_soon(self._heartbeat)
        tg.start_soon(self._watch_held)

    async def _heartbeat(self) -> None:
        """Renew this worker's leases every ``lease / 3``; hand over the jobs found lost."""
        link = self._shared
        journal = link.shared_journal
        while True:
            await anyio.sleep(journal.lease / 3)
            try:
                with anyio.CancelScope(shield=True):  # a statement cut off costs a connection
                    lost = await journal.renew()
            except DatabaseUnavailableError as exc:
                log.warning("leases not renewed (%s); retried in %.3g s", exc, journal.lease / 3)
                continue
            for key in sorted(lost):
                job = link.lost(key)
                if job is not None:
                    self._lease_lost(job)

    def _lease_lost(self, job: Job) -> None:
        """Another worker claimed ``job``: report it; stop working on it (now if it waits
        in the schedule, else when its step next looks)."""
        task_id = job.task.id if job.task is not None else None
        log.warning(
            "key %r: this worker's lease was lost to another worker (it stalled past its "
            "lease); its records for the job stop here and the batch waits for the job's end",
            job.key,
        )
        self._counts["lease_lost"] += 1
        self.events.emit("lease_lost", job.key, task_id, worker=self._shared.worker)
        if job.phase in ("waiting", "backoff"):
            self._hand_over(job)

    async def _watch_held(self) -> None:
        """The one task waiting for held jobs (see the module docstring)."""
        journal = self._shared.shared_journal
        longest = max(0.01, min(journal.lease / 4, 5.0))
        period = first = min(_FIRST_READ, longest)
        while True:
            if not self._held:
                self._held_wake = anyio.Event()
                await self._held_wake.wait()
            self._held_wake = anyio.Event()
            with anyio.move_on_after(period):
                await self._held_wake.wait()  # a new held job: read sooner
            period = first if self._held_wake.is_set() else min(2 * period, longest)
            keys = list(self._held)
            rows: dict[str, JobRow] = {}
            try:
                with anyio.CancelScope(shield=True):  # (as in the heartbeat)
                    for start in range(0, len(keys), _READ_CHUNK):
                        rows.update(await journal.fetch(keys[start : start + _READ_CHUNK]))
            except DatabaseUnavailableError as exc:
                self._stop_database(exc)
                for key in keys:
                    self._release_held(key, error=exc)
                continue
            for key in keys:
                row = rows.get(key)
                if row is not None and row.entry.terminal:
                    self._release_held(key, row=row)
                    period = first
                elif row is None or not row.live or row.worker == self._shared.worker:
                    job = self._release_held(key)  # (its lease is free, or this worker's)
                    if job is not None:
                        self._dispatch(self._reclaim, job)
                    period = first

    def _release_held(
        self, key: str, *, row: JobRow | None = None, error: OmnividError | None = None
    ) -> Job | None:
        """Take a held job back into the window; deliver it from ``row`` (finished) or with
        ``error``, else return it (to be claimed again)."""
        job = self._held.pop(key, None)
        if job is None:
            return None
        self.window.take()
        if error is not None:
            self._end(job, task=job.task, error=error, kind="not_submitted")
            return None
        if row is None:
            return job
        entry = row.entry
        job.attempts = entry.attempts
        job.task_ids = list(entry.task_ids)
        job.cost = entry.cost or 0.0
        job.worker = row.worker
        self._end_from_journal(job, entry)
        return None
