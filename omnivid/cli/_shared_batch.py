"""``omnivid batch --journal postgresql://... --batch NAME``: what a run on a shared journal does
differently from one on its own SQLite file (the rest is :mod:`omnivid.cli._batch_run`'s).

* **The journal.** A ``postgresql://`` URL opens the batch's :class:`PostgresJournal` (the
  batch is ``--batch``, else the jobs file's name without its extension: ``clips`` for
  ``clips.jsonl``), with no lock file: any number of processes, on any hosts, run one batch
  together; a SQLite path opens that file under its lock, as before (:func:`open_run_journal`).
  A malformed URL, a server that cannot be reached or a permission problem is one line naming
  it (``ConfigurationError``: exit status 2).
* **Downloads.** A process saves the videos of the jobs it ran; a job another worker ran comes
  back ``from_journal`` with that worker's name and gets its row from the journal, the files
  that worker recorded included (:func:`ran_elsewhere`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from ..batch._outcome import Outcome
from ..journal import JournalBackend, SharedJournal, connect_journal, is_database_url
from ..journal._sqlite import Journal

__all__ = [
    "RunJournal",
    "batch_name",
    "close_run_journal",
    "journal_label",
    "open_run_journal",
    "ran_elsewhere",
]


class RunJournal(JournalBackend, Protocol):
    """The journal of a run of ``omnivid batch``: SQLite's or PostgreSQL's."""

    def record_download(self, key: str | int, paths: Sequence[str]) -> None:
        """Record the files a job's videos were saved to."""
        ...


def journal_label(journal: str | Path) -> str:
    """The journal as messages name it: a URL without its password."""
    if not is_database_url(journal):
        return str(journal)
    parts = urlsplit(str(journal))
    if parts.password is None:
        return str(journal)
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def batch_name(jobs: Path, batch: str | None) -> str:
    """``--batch``, else the jobs file's name without its extension."""
    return batch if batch is not None else jobs.stem


async def open_run_journal(
    journal: str | Path,
    *,
    jobs: Path,
    batch: str | None,
    lock: Callable[[Path], IO[bytes] | None],
) -> tuple[RunJournal, IO[bytes] | None]:
    """The run's journal and the lock it holds (None: a shared journal needs none)."""
    if is_database_url(journal):
        opened, _ = await connect_journal(str(journal), batch=batch_name(jobs, batch))
        assert isinstance(opened, SharedJournal)
        return cast("RunJournal", opened), None  # (PostgresJournal: record_download too)
    path = Path(journal)
    held = lock(path)
    try:
        return Journal.open(path), held
    except BaseException:
        if held is not None:
            held.close()
        raise


def close_run_journal(journal: RunJournal) -> Awaitable[None] | None:
    """Close the journal: an awaitable to wait on for a shared one (its last records)."""
    if isinstance(journal, SharedJournal):
        return journal.aclose()
    journal.close()
    return None


def ran_elsewhere(outcome: Outcome, journal: RunJournal) -> bool:
    """True for an outcome of a shared batch that another worker ran (its videos are that
    worker's to save)."""
    if not isinstance(journal, SharedJournal) or outcome.worker is None:
        return False
    return outcome.from_journal and outcome.worker != journal.worker
