"""One run of ``omnivid batch`` (see :mod:`omnivid.cli._batch`): :class:`BatchCommand`, what
was asked, and :class:`BatchRun`, which holds the journal and its lock, runs one ``client.map``
per provider over a lazy read of the batch file, downloads the videos (through a
:class:`~omnivid.cli._downloads.DownloadQueue`), streams results.jsonl and prints the summary.

It holds state only for the jobs it is running: those pulled by a ``map`` and without a row yet
(at most the window of each ``map`` plus the download backlog), and counters for the summary.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO

import aiohttp
import anyio
from attrs import define, frozen

from .._client import AsyncClient
from .._models import Task, VideoRequest
from ..batch._outcome import TERMINAL_EVENTS, BatchStats, Event, Outcome
from ..batch._policy import DEFAULT_RESUBMIT, ResubmitPolicy
from ..errors import (
    AuthenticationError,
    DownloadExpiredError,
    EndpointUnreachableError,
    InsufficientCreditError,
    OmnividError,
    PermissionDeniedError,
)
from ._batch_rows import interrupted_report, interrupted_row, invalid_row, job_row, summary
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, client_for
from ._downloads import DownloadQueue
from ._env import Endpoint
from ._jobindex import JobIndex, LineReader
from ._jobs import Job, LineError, UsageError
from ._progress import BatchDisplay, ProgressMode
from ._results import (
    ResultCounts,
    ResultRecord,
    ResultsFile,
    billing_unit,
)
from ._saving import EXPIRED_NOTE, expiry, lifetime, save_fresh
from ._shared_batch import (
    RunJournal,
    close_run_journal,
    journal_label,
    open_run_journal,
    ran_elsewhere,
)
from ._videos import VideoFiles, VideoNaming

__all__ = ["BatchCommand", "BatchRun"]

_STOPS = (
    AuthenticationError,
    InsufficientCreditError,
    PermissionDeniedError,
    EndpointUnreachableError,
)
"""Errors that stop a provider's submits: reported once (``BatchStats.stopped``), not per job."""


@frozen(kw_only=True)
class BatchCommand:
    """Everything ``omnivid batch`` was asked to do."""

    jobs: Path
    out: Path
    provider: str | None = None
    max_in_flight: int = 16
    max_cost: tuple[str, ...] = ()
    max_attempts: int | None = None
    simulate: bool = False
    sim_seed: int | None = None
    resubmit_ambiguous: bool = False
    strict: bool = False
    journal: Path | None = None
    journal_url: str | None = None  # a shared (PostgreSQL) journal: see _shared_batch
    batch: str | None = None
    base_urls: tuple[str, ...] = ()
    time_scale: float = 1.0
    progress: ProgressMode = "auto"
    max_downloads: int = 16
    video_names: VideoNaming = "key"

    @property
    def journal_path(self) -> Path:
        """``--journal``, else ``DIR/journal.sqlite``."""
        return self.journal if self.journal is not None else self.out / "journal.sqlite"


@define
class _Download:
    """A completed job whose videos are to be saved."""

    job: Job
    outcome: Outcome
    task: Task
    client: AsyncClient


class BatchRun:
    """One run of a batch: its journal, its display, its results."""

    def __init__(
        self,
        command: BatchCommand,
        index: JobIndex,
        budgets: Mapping[str, float],
        interrupted: Sequence[int],
    ) -> None:
        self.command = command
        self.index = index
        self.budgets = budgets
        self.interrupted = interrupted
        self.videos_dir = command.out / "videos"
        self.videos = VideoFiles(self.videos_dir, command.video_names, index.stems or ())
        self.results = ResultsFile(command.out / "results.jsonl")
        self.counts = ResultCounts()
        self.pending: dict[str, Job] = {}  # pulled by a map, no row yet
        self.downloading: dict[str, Outcome] = {}  # of those, the ones completed
        self.running: dict[str, str] = {}  # key -> task id, tasks not finished
        self.unanswered: set[str] = set()
        self.left_running: dict[str, tuple[str, str]] = {}  # after a stop: (task id, provider)
        self.left_unanswered: list[str] = []
        self.rate_limited: set[str] = set()
        self.not_reached: set[str] = set()
        self.stats: dict[str, BatchStats] = {}  # per provider, when its batch ended
        self.readers: dict[str, LineReader] = {}
        in_flight = command.max_in_flight * max(1, len(index.providers))
        self.downloads: DownloadQueue[_Download] = DownloadQueue(
            floor=min(4, command.max_downloads),
            ceiling=command.max_downloads,
            high=max(64, 2 * in_flight),
        )
        self.display = BatchDisplay(index.rows, mode=command.progress)
        self.display.saving = lambda: self.downloads.backlog
        self._journal: RunJournal | None = None

    @property
    def journal(self) -> RunJournal:
        """The open journal."""
        assert self._journal is not None
        return self._journal

    async def run(self, endpoints: Mapping[str, Endpoint]) -> int:
        """Run every provider's jobs concurrently; write results; print the summary."""
        out = self.command.out
        shared = self.command.journal_url
        for folder in (out,) if shared else (out, self.command.journal_path.parent):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {folder}: {exc.strerror or exc}") from None
        self._journal, lock = await open_run_journal(
            shared or self.command.journal_path,
            jobs=self.command.jobs,
            batch=self.command.batch,
            lock=_lock,
        )
        try:
            self.results.open()
            self.readers = {name: self.index.reader(name) for name in endpoints}
            with self.display:
                try:
                    self._invalid_rows()
                    await self._run_all(endpoints)
                finally:
                    # also after Ctrl-C: the results file has a row for every line
                    self._unfinished_rows()
        finally:
            for reader in self.readers.values():
                reader.close()
            self.results.close()
            closing = close_run_journal(self.journal)
            if closing is not None:  # a shared journal's last records (lost if it is gone)
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await closing
            if lock is not None:
                lock.close()
            if self.interrupted:
                self._report_interrupted()
            self._summary()
        if any(stats.stopped for stats in self.stats.values()):
            return EXIT_USAGE  # a key, balance, model access or endpoint to fix first
        return EXIT_OK if self.counts.all_ok else EXIT_FAILED

    async def _run_all(self, endpoints: Mapping[str, Endpoint]) -> None:
        """One map per provider and the downloads, until every job has its row."""
        try:
            async with AsyncExitStack() as stack:
                clients = {
                    name: await stack.enter_async_context(
                        client_for(endpoint, self.command.time_scale)
                    )
                    for name, endpoint in endpoints.items()
                }
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.downloads.run, self._save)
                    try:
                        async with anyio.create_task_group() as maps:
                            for name, client in clients.items():
                                maps.start_soon(self._run_provider, name, client)
                    finally:
                        self.downloads.close()  # the backlog is still saved
        except BaseExceptionGroup as group:
            raise _single(group) from None

    # -- one provider ------------------------------------------------------------------------
    async def _run_provider(self, name: str, client: AsyncClient) -> None:
        attempts = self.command.max_attempts
        resubmit = DEFAULT_RESUBMIT if attempts is None else ResubmitPolicy(max_attempts=attempts)
        async with client.map(
            self._jobs(self.readers[name]),
            max_in_flight=self.command.max_in_flight,
            max_cost=self.budgets.get(name),
            journal=self.journal,
            resubmit_ambiguous=self.command.resubmit_ambiguous,
            on_event=functools.partial(self._on_event, name),
            resubmit=resubmit,
        ) as outcomes:
            try:
                async for outcome in outcomes:
                    await self._take(client, outcome)
            finally:
                self.stats[name] = outcomes.statistics()

    async def _jobs(self, reader: LineReader) -> AsyncIterator[tuple[str, VideoRequest]]:
        """The provider's jobs, read from the file as the map pulls them; none is taken while
        the download backlog is full (so no task is submitted then)."""
        downloads = self.downloads
        while True:
            if downloads.full:
                await downloads.wait_room()
            item = next(reader, None)
            if item is None:
                return
            if isinstance(item, LineError):  # the file changed since it was checked
                self._finish(invalid_row(item))
                continue
            self.pending[item.key] = item
            yield item.key, item.request

    async def _take(self, client: AsyncClient, outcome: Outcome) -> None:
        """An outcome: its row now, or its videos to the download queue."""
        key = str(outcome.key)
        job = self.pending[key]
        task = outcome.task
        if not outcome.ok or task is None:  # a stop's cause is printed once, in the summary
            stop = isinstance(outcome.error, _STOPS) and task is None
            self._finish(job_row(job, outcome), show=not stop)
            return
        if ran_elsewhere(outcome, self.journal):  # another worker's: its videos are its own
            entry = self.journal.get(key)
            saved = [str(p) for p in entry.downloads] if entry is not None else []
            self._finish(job_row(job, outcome, videos=saved))
            return
        if outcome.from_journal:  # finished in an earlier run: saved, expired or to fetch
            entry = self.journal.get(key)
            saved = [str(p) for p in entry.downloads] if entry is not None else []
            if saved and all(Path(p).exists() for p in saved):
                self._finish(job_row(job, outcome, videos=saved))
                return
            if entry is not None and (entry.error or "").startswith(EXPIRED_NOTE):
                self._finish(job_row(job, outcome, status="expired", error=entry.error))
                return
        paths = self.videos.paths(key, task)
        if paths and all(p.exists() for p in paths):
            saved = [str(p) for p in paths]
            self.journal.record_download(key, saved)
            self._finish(job_row(job, outcome, videos=saved))
            return
        self.downloading[key] = outcome
        await self.downloads.put(
            _Download(job, outcome, task, client),
            expires=expiry(task),
            lifetime=None if outcome.from_journal else lifetime(task, self.command.time_scale),
        )

    async def _save(self, item: _Download) -> None:
        """Save one job's videos (see :func:`~omnivid.cli._saving.save_fresh`), record them in
        the journal and write the job's row."""
        job, outcome = item.job, item.outcome
        try:
            paths = await save_fresh(self.videos, item.client, job.key, item.task)
        except DownloadExpiredError as exc:
            message = (
                f"{EXPIRED_NOTE} (HTTP {exc.status}; reading the task again gave no fresh URL): "
                f"task {item.task.id} was paid for, its video is lost"
            )
            self.journal.record_error(job.key, message)  # a rerun reports it, never retries
            self._finish(job_row(job, outcome, status="expired", error=message))
            return
        except (OmnividError, aiohttp.ClientError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = f"download failed: {why or type(exc).__name__}"
            self._finish(job_row(job, outcome, error=error))
            return
        saved = [str(p) for p in paths]
        self.journal.record_download(job.key, saved)
        self._finish(job_row(job, outcome, videos=saved))

    # -- events and records ------------------------------------------------------------------
    def _on_event(self, provider: str, event: Event) -> None:
        """Track tasks in flight (for the bar and for Ctrl-C) and surface what needs a look."""
        if event.kind == "rate_limited":
            if provider not in self.rate_limited:
                self.rate_limited.add(provider)
                self.display.note(f"{provider} answered 429 (rate limited); slowing down")
            return
        if event.kind == "retrying" and event.detail.get("reason") in ("not_reached", "not_sent"):
            if provider not in self.not_reached:  # an endpoint that does not answer
                self.not_reached.add(provider)
                self.display.note(f"{event.detail.get('error')}; retrying")
            return
        if event.key is None:
            return
        key = str(event.key)
        if event.kind in ("submitted", "resumed", "abandoned") and event.task_id:
            self.running[key] = event.task_id
            self.display.task_started(key, event.task_id)
        elif event.kind == "abandoned":
            self.unanswered.add(key)
        elif event.kind == "retrying" and event.task_id:
            why = event.detail.get("error") or event.detail.get("reason")
            self.display.note(
                f"key={key}: task {event.task_id} failed ({why}); submitting it again "
                f"(attempt {event.detail.get('attempt')})"
            )
        elif event.kind in TERMINAL_EVENTS:
            self.running.pop(key, None)

    def _finish(self, record: ResultRecord, *, show: bool = True) -> None:
        """Write ``record`` (a job's one row) and forget the job."""
        job = self.pending.get(record.key)
        if job is not None and job.line == record.line:
            del self.pending[record.key]
            self.downloading.pop(record.key, None)
            self.running.pop(record.key, None)
        self.counts.add(record)
        if record.status == "ambiguous":
            self.display.note(f"key={record.key}: {record.error}")
        self.results.append(record)
        self.display.job_finished(record, show=show)

    def _invalid_rows(self) -> None:
        """The rows of the lines that cannot run (already reported with their numbers)."""
        if not self.index.invalid:
            return
        reader = self.index.reader(None)
        try:
            for item in reader:
                if isinstance(item, LineError):
                    self._finish(invalid_row(item), show=False)
        finally:
            reader.close()

    def _unfinished_rows(self) -> None:
        """After a stop: a row for each job pulled and not finished, then for each line no map
        reached (the file is read on, lightly)."""
        stopped = "the batch stopped before this job finished; rerun to run it"
        for key, job in list(self.pending.items()):
            outcome = self.downloading.get(key)
            if outcome is not None:
                error = "the batch stopped before the download finished; rerun to download"
                self._finish(job_row(job, outcome, error=error), show=False)
                continue
            task_id = self.running.get(key)
            if task_id:
                self.left_running[key] = (task_id, job.provider)
            elif key in self.unanswered:
                self.left_unanswered.append(key)
            record = interrupted_row(key, job.line, job.provider, job.request.model, task_id)
            self._finish(record, show=False)
        for name, reader in self.readers.items():
            for line, key, model in reader.rest():
                record = ResultRecord(
                    key=key,
                    line=line,
                    status="interrupted",
                    ok=False,
                    provider=name,
                    model=model,
                    cost_unit=billing_unit(name),
                    error=stopped,
                )
                self._finish(record, show=False)

    # -- reporting ---------------------------------------------------------------------------
    def _report_interrupted(self) -> None:
        text = interrupted_report(
            self.left_running,
            self.left_unanswered,
            journal_label(self.command.journal_url or self.command.journal_path),
        )
        print(text, file=sys.stderr, flush=True)

    def _summary(self) -> None:
        for stats in self.stats.values():
            if stats.stopped:
                print(f"omnivid: {stats.stopped}", file=sys.stderr, flush=True)
        text = summary(self.counts, self.index.rows, self.stats, self.results.path, self.videos_dir)
        print(text, flush=True)


def _single(group: BaseExceptionGroup) -> BaseException:
    """The one error inside (nested) task-group errors, so that the command line reports it as
    itself; the group when there are several."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _lock(journal: Path) -> IO[bytes] | None:
    """Hold ``JOURNAL.lock`` for the run, so two batches never share a journal (both would
    submit the same jobs). The OS drops the lock when the process dies, even by SIGKILL.
    Without ``fcntl`` (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        return None
    path = journal.with_name(journal.name + ".lock")
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError(
            f"another omnivid batch is running with the journal {journal}; wait for it to "
            "finish (two runs on one journal would submit the same jobs twice)"
        ) from None
    return handle
