"""Journals: where a batch records each job's steps, so it can stop at any moment and resume.

* :mod:`._base`: the seam, :class:`JournalBackend` (what a batch needs from a journal) and
  :class:`JournalEntry` (one job as a journal knows it);
* :mod:`._sqlite`: the SQLite journal, :class:`Journal` (one machine; the default);
* :mod:`._group_commit`: the writes of a few event-loop turns in one transaction.

:func:`open_journal` turns what a user passes as ``journal=`` into a backend.
"""

from __future__ import annotations

import os

from ._base import (
    OPEN_STATES,
    TERMINAL_STATES,
    JournalBackend,
    JournalEntry,
    JournalState,
    Spending,
)
from ._sqlite import Journal

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "Journal",
    "JournalBackend",
    "JournalEntry",
    "JournalState",
    "Spending",
    "open_journal",
]


def open_journal(spec: str | os.PathLike[str] | JournalBackend) -> tuple[JournalBackend, bool]:
    """The backend for ``journal=`` and whether the caller opened it (and must close it): a
    path opens the SQLite journal there; a backend is used as it is."""
    if isinstance(spec, str | os.PathLike):
        return Journal.open(spec), True
    return spec, False
