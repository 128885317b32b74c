"""One run of ``omnivid batch`` (see :mod:`omnivid.cli._batch`): :class:`BatchCommand`, what
was asked, and :class:`BatchRun`, which holds the journal and its lock, runs one ``client.map``
per provider, downloads the videos, writes results.jsonl and prints the summary."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import aiohttp
import anyio
from attrs import frozen

from .._client import AsyncClient
from .._models import Task, TaskStatus
from ..batch._outcome import TERMINAL_EVENTS, BatchStats, Event, Outcome
from ..batch._policy import DEFAULT_RESUBMIT, ResubmitPolicy
from ..errors import (
    AuthenticationError,
    BudgetExceededError,
    EndpointUnreachableError,
    InsufficientCreditError,
    JournalConflictError,
    OmnividError,
    PermissionDeniedError,
    SubmissionUnknownError,
    TaskFailedError,
    ValidationError,
)
from ..journal._sqlite import Journal
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, client_for
from ._env import Endpoint
from ._jobs import Job, JobFile, UsageError
from ._progress import BatchDisplay, ProgressMode
from ._results import ResultRecord, ResultsFile, billing_unit, clean_amount, format_spend
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
    base_urls: tuple[str, ...] = ()
    time_scale: float = 1.0
    progress: ProgressMode = "auto"
    max_downloads: int = 4
    video_names: VideoNaming = "key"

    @property
    def journal_path(self) -> Path:
        """``--journal``, else ``DIR/journal.sqlite``."""
        return self.journal if self.journal is not None else self.out / "journal.sqlite"


class BatchRun:
    """One run of a batch: its journal, its display, its results."""

    def __init__(
        self,
        command: BatchCommand,
        jobfile: JobFile,
        budgets: Mapping[str, float],
        interrupted: Sequence[int],
    ) -> None:
        self.command = command
        self.jobfile = jobfile
        self.budgets = budgets
        self.interrupted = interrupted
        self.videos_dir = command.out / "videos"
        self.videos = VideoFiles(
            self.videos_dir, command.video_names, [job.key for job in jobfile.jobs]
        )
        self.results = ResultsFile(command.out / "results.jsonl")
        self.records: dict[int, ResultRecord] = {}  # by line: a reused key has its own row
        self.running: dict[str, str] = {}
        self.downloading: dict[str, Outcome] = {}
        self.unanswered: set[str] = set()
        self.rate_limited: set[str] = set()
        self.not_reached: set[str] = set()
        self.stats: dict[str, BatchStats] = {}  # per provider, when its batch ended
        self.spend_this_run: dict[str, float] = {}
        self.jobs_by_key = {job.key: job for job in jobfile.jobs}
        self.display = BatchDisplay(len(jobfile.jobs) + len(jobfile.errors), mode=command.progress)
        self._journal: Journal | None = None

    @property
    def journal(self) -> Journal:
        """The open journal."""
        assert self._journal is not None
        return self._journal

    async def run(self, endpoints: Mapping[str, Endpoint]) -> int:
        """Run every provider's jobs concurrently; write results; print the summary."""
        out = self.command.out
        for folder in (out, self.command.journal_path.parent):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {folder}: {exc.strerror or exc}") from None
        lock = _lock(self.command.journal_path)
        try:
            self._journal = Journal.open(self.command.journal_path)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        try:
            self.results.open()
            with self.display:
                for error in self.jobfile.errors:
                    self._finish(
                        ResultRecord(
                            key=error.key,
                            line=error.line,
                            status="invalid",
                            ok=False,
                            error=error.message,
                        ),
                        show=False,  # already reported with its line number
                    )
                try:
                    async with anyio.create_task_group() as tg:
                        for name, endpoint in endpoints.items():
                            jobs = [j for j in self.jobfile.jobs if j.provider == name]
                            tg.start_soon(self._run_provider, endpoint, jobs)
                finally:
                    # also after Ctrl-C: the results file lists every job, running ones too
                    self.results.rewrite(self._all_records())
        finally:
            self.results.close()
            self.journal.close()
            if lock is not None:
                lock.close()
            if self.interrupted:
                self._report_interrupted()
            self._summary()
        if any(stats.stopped for stats in self.stats.values()):
            return EXIT_USAGE  # a key, balance, model access or endpoint to fix first
        return EXIT_OK if all(r.ok for r in self.records.values()) else EXIT_FAILED

    # -- one provider ------------------------------------------------------------------------
    async def _run_provider(self, endpoint: Endpoint, jobs: list[Job]) -> None:
        name = endpoint.provider
        limiter = anyio.CapacityLimiter(self.command.max_downloads)
        attempts = self.command.max_attempts
        resubmit = DEFAULT_RESUBMIT if attempts is None else ResubmitPolicy(max_attempts=attempts)
        async with (
            client_for(endpoint, self.command.time_scale) as client,
            anyio.create_task_group() as downloads,
            client.map(
                [(job.key, job.request) for job in jobs],
                max_in_flight=self.command.max_in_flight,
                max_cost=self.budgets.get(name),
                journal=self.journal,
                resubmit_ambiguous=self.command.resubmit_ambiguous,
                on_event=functools.partial(self._on_event, name),
                resubmit=resubmit,
            ) as outcomes,
        ):
            try:
                async for outcome in outcomes:
                    job = self.jobs_by_key[str(outcome.key)]
                    task = outcome.task
                    if outcome.ok and task is not None:
                        self.downloading[job.key] = outcome
                        downloads.start_soon(self._download, client, job, outcome, task, limiter)
                    else:  # a stop's cause is printed once, in the summary
                        stop = isinstance(outcome.error, _STOPS) and task is None
                        self._finish(self._record(job, outcome), show=not stop)
            finally:
                self.stats[name] = outcomes.statistics()

    async def _download(
        self,
        client: AsyncClient,
        job: Job,
        outcome: Outcome,
        task: Task,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        """Save the task's videos (unless already saved, under the names the journal recorded
        or those of `VideoFiles`) and record them in the journal."""
        entry = self.journal.get(job.key)
        recorded = list(entry.downloads) if entry is not None else []
        paths = recorded or self.videos.paths(job.key, task)
        try:
            if not paths or not all(p.exists() for p in paths):
                async with limiter:
                    paths = await self.videos.save(client, job.key, task)
        except (OmnividError, aiohttp.ClientError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            error = f"download failed: {why or type(exc).__name__}"
            self._finish(self._record(job, outcome, error=error))
            return
        saved = [str(p) for p in paths]
        if entry is None or [str(p) for p in entry.downloads] != saved:
            self.journal.record_download(job.key, saved)
        self._finish(self._record(job, outcome, videos=saved))

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

    def _record(
        self,
        job: Job,
        outcome: Outcome,
        *,
        videos: Sequence[str] = (),
        error: str | None = None,
    ) -> ResultRecord:
        task = outcome.task
        problem = outcome.error
        text = error if problem is None else str(problem)
        if isinstance(problem, TaskFailedError):  # the row names provider, model and task
            text = f"task {problem.task.status.value}: {problem.task.failure_reason}"
        return ResultRecord(
            key=job.key,
            line=job.line,
            status=_status(task, problem),
            ok=outcome.ok and error is None,
            provider=job.provider,
            model=job.request.model,
            task_id=outcome.task_id,
            cost=outcome.cost,
            cost_unit=billing_unit(job.provider),
            credits=task.credits if task else None,
            attempts=outcome.attempts,
            videos=tuple(videos),
            urls=tuple(task.video_urls) if task else (),
            error=text,
            from_journal=outcome.from_journal,
        )

    def _finish(self, record: ResultRecord, *, show: bool = True) -> None:
        self.records[record.line] = record
        self.running.pop(record.key, None)
        self.downloading.pop(record.key, None)
        if record.cost and not record.from_journal and record.provider:
            spent = self.spend_this_run
            spent[record.provider] = spent.get(record.provider, 0.0) + record.cost
        if record.status == "ambiguous":
            self.display.note(f"key={record.key}: {record.error}")
        self.results.append(record)
        self.display.job_finished(record, show=show)

    def _all_records(self) -> list[ResultRecord]:
        records = dict(self.records)
        for key, job in self.jobs_by_key.items():
            if job.line in records:
                continue
            if key in self.downloading:
                records[job.line] = self._record(
                    job,
                    self.downloading[key],
                    error="the batch stopped before the download finished; rerun to download",
                )
                continue
            task_id = self.running.get(key)
            records[job.line] = ResultRecord(
                key=key,
                line=job.line,
                status="interrupted",
                ok=False,
                provider=job.provider,
                model=job.request.model,
                task_id=task_id,
                cost_unit=billing_unit(job.provider),
                error=(
                    "the batch stopped while this task ran; rerun to resume it"
                    if task_id
                    else "the batch stopped before this job finished; rerun to run it"
                ),
            )
        return list(records.values())

    def _finished(self, key: str) -> bool:
        """Whether the job keyed ``key`` has its row."""
        job = self.jobs_by_key.get(key)
        return job is not None and job.line in self.records

    # -- reporting ---------------------------------------------------------------------------
    def _report_interrupted(self) -> None:
        journal = self.command.journal_path
        running = {k: v for k, v in self.running.items() if not self._finished(k)}
        lines = []
        if running:
            lines.append(
                f"omnivid: interrupted with {len(running)} task(s) submitted and not finished:"
            )
            for key, task_id in sorted(running.items()):
                provider = self.jobs_by_key[key].provider if key in self.jobs_by_key else "?"
                lines.append(f"  key={key} task={task_id} ({provider})")
        for key in sorted(k for k in self.unanswered if not self._finished(k)):
            lines.append(
                f"  key={key}: its submit was cut off unanswered; a rerun reports it as ambiguous"
            )
        lines.append(
            f"omnivid: rerun the same command to resume (the journal {journal} keeps every "
            "task id; nothing is submitted twice)"
        )
        print("\n".join(lines), file=sys.stderr, flush=True)

    def _summary(self) -> None:
        records = list(self.records.values())
        counts: dict[str, int] = {}
        for r in records:
            word = "ok" if r.ok else _summary_word(r.status)
            counts[word] = counts.get(word, 0) + 1
        total_jobs = len(self.jobfile.jobs) + len(self.jobfile.errors)
        missing = total_jobs - len(records)
        if missing:
            counts["interrupted"] = counts.get("interrupted", 0) + missing
        order = ["ok", "failed", "ambiguous", "skipped", "invalid", "conflict", "interrupted"]
        parts = [f"{counts.get(w, 0)} {w}" for w in order if counts.get(w) or w == "ok"]
        spent: dict[str, float] = {}
        for r in records:
            if r.cost and r.provider:
                spent[r.provider] = spent.get(r.provider, 0.0) + r.cost
        lines = [
            f"omnivid: {total_jobs} job(s): " + ", ".join(parts),
            f"spend: {format_spend(spent)} in total, {format_spend(self.spend_this_run)} this run",
            *filter(None, (_cap_line(name, stats) for name, stats in sorted(self.stats.items()))),
            f"results: {self.results.path}",
            f"videos: {self.videos_dir}",
        ]
        for stats in self.stats.values():
            if stats.stopped:
                print(f"omnivid: {stats.stopped}", file=sys.stderr, flush=True)
        if counts.get("ambiguous"):
            lines.append(
                "ambiguous jobs may have been accepted (and billed) by the provider: check its "
                "task list before rerunning with --resubmit-ambiguous"
            )
        if counts.get("skipped"):
            lines.append("skipped jobs were not submitted (budget): rerun with a larger --max-cost")
        print("\n".join(lines), flush=True)


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


def _cap_line(provider: str, stats: BatchStats) -> str:
    """``budget apimart: spent 2.00 of cap 2.00`` (over every run of the journal)."""
    if stats.max_cost is None:
        return ""
    unit = " credits" if billing_unit(provider) == "credits" else ""
    line = f"budget {provider}: spent {clean_amount(stats.cost_spent_total):.2f}{unit} of cap "
    line += f"{stats.max_cost:.2f}{unit}"
    if stats.cost_reserved_total >= 0.005:
        line += f" ({stats.cost_reserved_total:.2f}{unit} reserved: running or possibly billed)"
    return line


def _status(task: Task | None, problem: OmnividError | None) -> str:
    if isinstance(problem, SubmissionUnknownError):
        return "ambiguous"
    if isinstance(problem, BudgetExceededError):
        return "skipped"
    if isinstance(problem, JournalConflictError):
        return "conflict"
    if task is not None and task.status.is_terminal:
        return task.status.value
    if isinstance(problem, ValidationError):
        return "invalid"
    if task is not None and problem is None and task.status is not TaskStatus.COMPLETED:
        return "interrupted"
    return "error"


def _summary_word(status: str) -> str:
    if status in ("ambiguous", "skipped", "invalid", "conflict", "interrupted"):
        return status
    return "failed"
