"""``results.jsonl``: one line per line of the batch file (blank and comment lines aside),
written as each job ends.

Each line is a JSON object::

    {"key": "3", "line": 3, "provider": "apimart", "model": "Omni-Flash-Ext",
     "task_id": "task_01H...", "status": "completed", "ok": true, "cost": 0.4,
     "cost_unit": "currency", "credits": 4, "attempts": 1,
     "videos": ["runs/demo/videos/task_01H....mp4"], "urls": ["https://..."],
     "error": null, "from_journal": false}

``status`` is the task's status (``completed``, ``failed``, ``cancelled``), or:

* ``expired``: the task completed (and was paid for) but its result URL expired before the
  video was saved, and reading the task again gave no fresh URL; ``task_id`` is set, and a
  rerun reports it again from the journal without another try;
* ``interrupted``: the batch was stopped while the task ran (``task_id`` set; a rerun resumes it)
  or before the job started (a rerun runs it);
* ``ambiguous``: the submit may have been accepted but its answer was lost, so the task id is
  unknown; check the provider before rerunning with ``--resubmit-ambiguous``;
* ``skipped``: not submitted because ``--max-cost`` was reached (a rerun submits it);
* ``invalid``: the line cannot run (bad JSON, a broken rule: ``error`` says which);
* ``conflict``: the journal holds a different request under this key;
* ``error``: refused by the provider (401, 402, 403...) or a task that could not be read.

``ok`` is true only for a completed task whose videos are all saved. ``cost`` is what the job's
tasks cost (rounded to 6 decimals, like ``credits``: no float residue), in the provider's billing
unit (``cost_unit``: APIMart ``currency``, EvoLink ``credits``); ``attempts`` counts the tasks
created for the job (failed tasks resubmitted included). API keys are never written.

**Order.** Rows are appended, each flushed, in the order jobs end, not in file order (``line``
gives the file order: ``jq -s 'sort_by(.line)[]'``): first the lines that cannot run, then the
jobs as they end (a job the journal finished in an earlier run as soon as the batch reaches it,
the others when their task has ended and their videos are saved), and, if the batch stops
early (Ctrl-C, an error), last the jobs it did not finish. A run killed outright leaves a valid
file of the rows so far; the next run writes the file anew, one row per line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from attrs import asdict, frozen

__all__ = [
    "ResultCounts",
    "ResultRecord",
    "ResultsFile",
    "billing_unit",
    "clean_amount",
    "format_spend",
    "summary_word",
]

_CREDIT_BILLED = frozenset({"evolink"})


def billing_unit(provider: str | None) -> str:
    """The unit of a provider's costs and budgets: ``credits`` (EvoLink) or ``currency``."""
    return "credits" if provider in _CREDIT_BILLED else "currency"


def unit_suffix(unit: str | None) -> str:
    """How a figure in ``unit`` is labelled: EvoLink's credits are the credits its API says it
    *reserved* for a task (it reports no final charge), so they read ``credits reserved``."""
    return " credits reserved" if unit == "credits" else ""


def clean_amount(value: float) -> float:
    """A cost or credit figure without float residue (sums of prices leave some): rounded to
    6 decimals, and 0 when it is within 1e-9 of 0 (so never ``-0.00`` nor ``1.1e-16``)."""
    return 0.0 if abs(value) < 1e-9 else round(value, 6)


def format_spend(spend: Mapping[str, float], *, compact: bool = False) -> str:
    """``4.80``, ``204.68 credits reserved``, or ``4.80 (apimart) + 204.68 credits reserved
    (evolink)``; ``compact``: ``4.80 + 204.68cr``."""
    if not spend:
        return "0.00"
    parts = []
    for provider, total in sorted(spend.items()):
        unit = billing_unit(provider)
        amount = clean_amount(total)
        if compact:
            parts.append(f"{amount:.2f}{'cr' if unit == 'credits' else ''}")
            continue
        label = f" ({provider})" if len(spend) > 1 else ""
        parts.append(f"{amount:.2f}{unit_suffix(unit)}{label}")
    return " + ".join(parts)


@frozen(kw_only=True)
class ResultRecord:
    """The outcome of one job, as written to ``results.jsonl``."""

    key: str
    line: int
    status: str
    ok: bool
    provider: str | None = None
    model: str | None = None
    task_id: str | None = None
    cost: float | None = None
    cost_unit: str | None = None
    credits: float | None = None
    attempts: int = 0
    videos: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    error: str | None = None
    from_journal: bool = False

    def to_json(self) -> str:
        """One JSON line (no trailing newline)."""
        data: dict[str, Any] = asdict(self)
        for name in ("cost", "credits"):
            if data[name] is not None:
                data[name] = clean_amount(data[name])
        data["videos"] = list(self.videos)
        data["urls"] = list(self.urls)
        return json.dumps(data, ensure_ascii=False, sort_keys=False)


class ResultsFile:
    """Appends records as jobs end, each line flushed (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[str] | None = None

    def open(self) -> None:
        """Start a fresh file (a rerun starts over; it sees every job again)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.path.open("w", encoding="utf-8")

    def append(self, record: ResultRecord) -> None:
        """Add one line now, flushed, so an interrupted run keeps what finished."""
        if self._out is None:
            self.open()
        assert self._out is not None
        self._out.write(record.to_json() + "\n")
        self._out.flush()

    def close(self) -> None:
        """Close the file, its lines on disk (fsync)."""
        if self._out is not None:
            out, self._out = self._out, None
            try:
                out.flush()
                os.fsync(out.fileno())
            finally:
                out.close()


class ResultCounts:
    """What the summary needs from the rows, as counters (never the rows themselves): rows per
    summary word, spend per provider (in total and this run), whether every row is ok."""

    WORDS = (
        "ok",
        "failed",
        "expired",
        "ambiguous",
        "skipped",
        "invalid",
        "conflict",
        "interrupted",
    )

    def __init__(self) -> None:
        self.rows = 0
        self.words: dict[str, int] = {}
        self.spent: dict[str, float] = {}
        self.spent_this_run: dict[str, float] = {}
        self.all_ok = True

    def add(self, record: ResultRecord) -> None:
        """Count one row."""
        self.rows += 1
        word = "ok" if record.ok else summary_word(record.status)
        self.words[word] = self.words.get(word, 0) + 1
        self.all_ok = self.all_ok and record.ok
        if record.cost and record.provider:
            provider = record.provider
            self.spent[provider] = self.spent.get(provider, 0.0) + record.cost
            if not record.from_journal:
                spent = self.spent_this_run
                spent[provider] = spent.get(provider, 0.0) + record.cost

    def line(self, total: int) -> str:
        """``3 ok, 1 failed, 1 invalid`` for ``total`` rows (those never written count as
        interrupted)."""
        counts = dict(self.words)
        if total > self.rows:
            counts["interrupted"] = counts.get("interrupted", 0) + total - self.rows
        return ", ".join(
            f"{counts.get(w, 0)} {w}" for w in self.WORDS if counts.get(w) or w == "ok"
        )


def summary_word(status: str) -> str:
    """The summary's word for a row that is not ok."""
    if status in ("expired", "ambiguous", "skipped", "invalid", "conflict", "interrupted"):
        return status
    return "failed"
