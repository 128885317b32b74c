"""``results.jsonl``: one line per job of a batch, written as jobs finish and rewritten at the end.

Each line is a JSON object::

    {"key": "3", "line": 3, "provider": "apimart", "model": "Omni-Flash-Ext",
     "task_id": "task_01H...", "status": "completed", "ok": true, "cost": 0.4,
     "cost_unit": "currency", "credits": 4, "attempts": 1,
     "videos": ["runs/demo/videos/task_01H....mp4"], "urls": ["https://..."],
     "error": null, "from_journal": false}

``status`` is the task's status (``completed``, ``failed``, ``cancelled``), or:

* ``interrupted``: the batch was stopped while the task ran (``task_id`` set; a rerun resumes it);
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

During a run lines are appended as jobs finish (a crash leaves a valid, partial file); at the end
the file is replaced atomically by the complete list in batch-file order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from attrs import asdict, frozen

__all__ = ["ResultRecord", "ResultsFile", "billing_unit", "clean_amount", "format_spend"]

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
    """Appends records as they come and rewrites the whole file at the end."""

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
        """Close the append stream."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def rewrite(self, records: Iterable[ResultRecord]) -> None:
        """Replace the file atomically with ``records`` sorted by line number."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for record in sorted(records, key=lambda r: r.line):
                out.write(record.to_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
