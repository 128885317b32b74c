"""``omnivid results --journal postgresql://... --batch NAME``: a shared batch's results at any
time, one JSON line per job, with the fields of ``results.jsonl`` (:mod:`omnivid.cli._results`).

It reads the batch's rows from the database, in key order, a page at a time (constant memory),
and writes nothing. ``line`` is null (the database does not know the batch file's lines) and
``from_journal`` true. ``status`` is the task's (``completed``, ``failed``, ``cancelled``) for
a finished job, else where the job stands:

* ``running``: submitted, its task not finished (``task_id`` set);
* ``submitting``: its worker recorded the intent to submit and holds it;
* ``ambiguous``: the intent's worker went away before the answer was recorded: the provider
  may be running it; it is never resubmitted unless asked (``--resubmit-ambiguous``);
* ``queued``: claimed or added, not worked on yet;
* ``skipped``: not submitted, the budget was reached; ``error``: not submitted for another
  reason (``error`` says which).

``ok`` is true for a completed task whose videos were saved by the worker that ran it.
A malformed URL, a server that cannot be reached or a permission problem: one line naming it,
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..journal import JobRow, connect_journal, is_database_url
from ..journal._base import SharedJournal
from ._common import EXIT_OK
from ._jobs import UsageError
from ._results import ResultRecord, billing_unit

__all__ = ["record_of", "results"]


async def results(args: argparse.Namespace) -> int:
    """Print the batch's results (see the module docstring); returns the exit status."""
    url, batch = args.journal, args.batch
    if not is_database_url(url):
        raise UsageError(f"--journal {url!r}: omnivid results reads a postgresql:// URL")
    journal, _ = await connect_journal(url, batch=batch)
    assert isinstance(journal, SharedJournal)
    rows = 0
    try:
        async for row in journal.rows():
            print(line_of(record_of(row)), flush=False)
            rows += 1
    finally:
        sys.stdout.flush()
        await journal.aclose()
    if not rows:
        print(f"omnivid: batch {batch!r} has no jobs in {url.split('@')[-1]}", file=sys.stderr)
    return EXIT_OK


def line_of(record: ResultRecord) -> str:
    """The record as a JSON line, ``line`` null (unknown to the database)."""
    data = json.loads(record.to_json())
    data["line"] = None
    return json.dumps(data, ensure_ascii=False)


def record_of(row: JobRow) -> ResultRecord:
    """A job's row as a ``results.jsonl`` record (see the module docstring)."""
    entry = row.entry
    task = entry.to_task() if entry.task is not None else None
    status: str
    if entry.terminal:
        status = entry.state
    elif entry.state == "submitted":
        status = "running"
    elif entry.state == "intent":
        status = "submitting" if row.live else "ambiguous"
    elif row.queued:
        status = "queued"
    else:
        status = "skipped" if "budget" in (entry.error or "") else "error"
    return ResultRecord(
        key=entry.key,
        line=0,
        status=status,
        ok=entry.state == "completed" and bool(entry.downloads),
        provider=entry.provider,
        model=entry.model,
        task_id=entry.task_id,
        cost=entry.cost,
        cost_unit=billing_unit(entry.provider),
        credits=task.credits if task is not None else None,
        attempts=entry.attempts,
        videos=tuple(str(p) for p in entry.downloads),
        urls=tuple(task.video_urls) if task is not None else (),
        error=entry.error,
        from_journal=True,
    )
