"""Progress on stderr: a live ``rich`` bar on a terminal, plain log lines everywhere else.

``rich`` is optional (the ``cli`` extra): it is imported only when a bar is shown, and without
it (or without a terminal, or with ``--progress log``) each finished job is one log line.

The batch bar shows jobs done out of total, failed, in flight, videos being saved (the download
backlog, when there is one), spend and an ETA::

    ETA = elapsed * remaining / finished        (finished = done + failed this run, > 0)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self, TextIO

from .._models import Task
from ._results import ResultRecord, clean_amount, format_spend, unit_suffix

__all__ = ["BatchDisplay", "ProgressMode", "TaskDisplay", "format_duration", "rich_available"]

ProgressMode = Literal["auto", "bar", "log", "quiet"]


def rich_available() -> bool:
    """True when the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _use_bar(mode: ProgressMode, stream: TextIO) -> bool:
    if mode == "bar":
        return rich_available()
    return mode == "auto" and stream.isatty() and rich_available()


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``42s``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class BatchDisplay:
    """Counters of a running batch and their rendering (bar or log lines)."""

    def __init__(
        self, total: int, *, stream: TextIO | None = None, mode: ProgressMode = "auto"
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode
        self.ok = 0
        self.failed = 0
        self.spend: dict[str, float] = {}
        self.in_flight: dict[str, str] = {}
        self.saving: Callable[[], int] | None = None  # the download backlog, if known
        self._finished_this_run = 0
        self._started = time.monotonic()
        self._progress: Any = None
        self._bar: Any = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        if _use_bar(self.mode, self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=Console(file=self.stream),
                transient=False,
                refresh_per_second=8,
            )
            self._progress.start()
            self._bar = self._progress.add_task("batch", total=self.total, detail="")
            self._refresh()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()
            self._progress = None

    # -- updates -----------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        """Jobs with a final result (ok or not)."""
        return self.ok + self.failed

    def eta(self) -> float | None:
        """Seconds until every job is finished, from this run's pace; None before the first."""
        remaining = self.total - self.finished
        if remaining <= 0:
            return 0.0
        if self._finished_this_run == 0:
            return None
        elapsed = time.monotonic() - self._started
        return elapsed * remaining / self._finished_this_run

    def task_started(self, key: str, task_id: str) -> None:
        """A job has a task at the provider that is not finished yet."""
        self.in_flight[key] = task_id
        self._refresh()

    def note(self, message: str) -> None:
        """A line worth the user's attention (ambiguous submit, rate limit...)."""
        if self.mode == "quiet":
            return
        self._print(f"omnivid: {message}")

    def job_finished(self, record: ResultRecord, *, show: bool = True) -> None:
        """Count one job's final result and show it (unless ``show`` is false)."""
        self.in_flight.pop(record.key, None)
        if record.ok:
            self.ok += 1
        else:
            self.failed += 1
        if record.cost and not record.from_journal:
            provider = record.provider or "?"
            self.spend[provider] = self.spend.get(provider, 0.0) + record.cost
        if not record.from_journal:
            self._finished_this_run += 1
        if self._progress is not None:
            show = show and not record.ok
        else:
            show = show and self.mode != "quiet"
        if show:
            self._print(self.log_line(record))
        self._refresh()

    def log_line(self, record: ResultRecord) -> str:
        """``[3/12] ok key=3 task=t_1 cost=0.40 -> DIR/videos/t_1.mp4`` and the like."""
        word = "ok" if record.ok else record.status.upper()
        parts = [f"[{self.finished}/{self.total}]", word, f"key={record.key}"]
        if record.task_id:
            parts.append(f"task={record.task_id}")
        cost = clean_amount(record.cost or 0.0)
        if cost:
            parts.append(f"cost={cost:.2f}{unit_suffix(record.cost_unit)}")
        if record.from_journal:
            parts.append("(journal)")
        if record.ok and record.videos:
            parts.append("-> " + ", ".join(record.videos))
        if record.error:
            parts.append(f"error: {record.error}")
        return " ".join(parts)

    def status_text(self) -> str:
        """``ok 3  failed 1  in flight 4  saving 2  spend 1.20 + 102.34cr  ETA 2m10s``."""
        saving = self.saving() if self.saving is not None else 0
        return (
            f"ok {self.ok}  failed {self.failed}  in flight {len(self.in_flight)}  "
            + (f"saving {saving}  " if saving else "")
            + f"spend {format_spend(self.spend, compact=True)}  ETA {format_duration(self.eta())}"
        )

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._bar, completed=self.finished, detail=self.status_text())

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)


class TaskDisplay:
    """Live progress of one task (``omnivid generate``): a bar, or a line per change."""

    def __init__(self, *, stream: TextIO | None = None, mode: ProgressMode = "auto") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode
        self._progress: Any = None
        self._bar: Any = None

    def __enter__(self) -> Self:
        if _use_bar(self.mode, self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self._progress.start()
            self._bar = self._progress.add_task("task", total=100, status="submitting")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, message: str) -> None:
        """One line above the bar (or on its own)."""
        if self.mode == "quiet":
            return
        if self._progress is not None:
            self._progress.console.print(f"omnivid: {message}", markup=False, highlight=False)
        else:
            print(f"omnivid: {message}", file=self.stream, flush=True)

    def update(self, task: Task) -> None:
        """Show a new snapshot of the task."""
        if self._progress is not None:
            self._progress.update(
                self._bar,
                description=task.id,
                completed=100 if task.status.value == "completed" else task.progress,
                status=task.status.value,
            )
        else:
            self.note(f"task {task.id}: {task.status.value} {task.progress}%")
