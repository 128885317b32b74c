"""What ``omnivid batch`` writes and says: a job's row in results.jsonl from its outcome
(:func:`job_row`), the rows of lines that cannot run or that a stop left unfinished, the
summary printed at the end (from counters, :class:`~omnivid.cli._results.ResultCounts`) and
the report after Ctrl-C."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .._models import Task, TaskStatus
from ..batch._outcome import BatchStats, Outcome
from ..errors import (
    BudgetExceededError,
    JournalConflictError,
    OmnividError,
    SubmissionUnknownError,
    TaskFailedError,
    ValidationError,
)
from ._jobs import Job, LineError
from ._results import ResultCounts, ResultRecord, billing_unit, clean_amount, format_spend

__all__ = [
    "interrupted_report",
    "interrupted_row",
    "invalid_row",
    "job_row",
    "summary",
]


def job_row(
    job: Job,
    outcome: Outcome,
    *,
    videos: Sequence[str] = (),
    error: str | None = None,
    status: str | None = None,
) -> ResultRecord:
    """The row of ``job`` from its outcome: ``videos`` saved, or the ``error`` (and
    ``status``, e.g. ``expired``) of what came after the outcome."""
    task = outcome.task
    problem = outcome.error
    text = error if problem is None else str(problem)
    if isinstance(problem, TaskFailedError):  # the row names provider, model and task
        text = f"task {problem.task.status.value}: {problem.task.failure_reason}"
    return ResultRecord(
        key=job.key,
        line=job.line,
        status=status or _status(task, problem),
        ok=outcome.ok and error is None and status is None,
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


def invalid_row(error: LineError) -> ResultRecord:
    """The row of a line that cannot run."""
    return ResultRecord(
        key=error.key, line=error.line, status="invalid", ok=False, error=error.message
    )


def interrupted_row(
    key: str, line: int, provider: str, model: str | None, task_id: str | None
) -> ResultRecord:
    """The row of a job the batch stopped before it finished (its task running, or not
    started)."""
    return ResultRecord(
        key=key,
        line=line,
        status="interrupted",
        ok=False,
        provider=provider,
        model=model,
        task_id=task_id,
        cost_unit=billing_unit(provider),
        error=(
            "the batch stopped while this task ran; rerun to resume it"
            if task_id
            else "the batch stopped before this job finished; rerun to run it"
        ),
    )


def summary(
    counts: ResultCounts,
    total: int,
    stats: Mapping[str, BatchStats],
    results: Path,
    videos: Path,
) -> str:
    """The lines printed at the end: jobs by outcome, spend, budgets, where things are, and
    what to do about ambiguous, skipped and expired jobs."""
    lines = [
        f"omnivid: {total} job(s): {counts.line(total)}",
        f"spend: {format_spend(counts.spent)} in total, "
        f"{format_spend(counts.spent_this_run)} this run",
        *filter(None, (_cap_line(name, s) for name, s in sorted(stats.items()))),
        f"results: {results}",
        f"videos: {videos}",
    ]
    words = counts.words
    if words.get("ambiguous"):
        lines.append(
            "ambiguous jobs may have been accepted (and billed) by the provider: check its "
            "task list before rerunning with --resubmit-ambiguous"
        )
    if words.get("skipped"):
        lines.append("skipped jobs were not submitted (budget): rerun with a larger --max-cost")
    if words.get("expired"):
        lines.append(
            "expired jobs completed (and were billed) but their result URLs expired before "
            "their videos were saved; a rerun reports them again without retrying"
        )
    return "\n".join(lines)


def interrupted_report(
    running: Mapping[str, tuple[str, str]], unanswered: Sequence[str], journal: Path | str
) -> str:
    """After Ctrl-C: the tasks left running (key -> task id, provider), the submits cut off,
    and how to resume."""
    lines = []
    if running:
        lines.append(
            f"omnivid: interrupted with {len(running)} task(s) submitted and not finished:"
        )
        for key, (task_id, provider) in sorted(running.items()):
            lines.append(f"  key={key} task={task_id} ({provider})")
    for key in sorted(unanswered):
        lines.append(
            f"  key={key}: its submit was cut off unanswered; a rerun reports it as ambiguous"
        )
    lines.append(
        f"omnivid: rerun the same command to resume (the journal {journal} keeps every "
        "task id; nothing is submitted twice)"
    )
    return "\n".join(lines)


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
