"""Journals: where a batch records each job's steps, so it can stop at any moment and resume.

* :mod:`._base`: the seam, :class:`JournalBackend` (what a batch needs from a journal) and
  :class:`JournalEntry` (one job as a journal knows it);
* :mod:`._sqlite`: the SQLite journal, :class:`Journal` (one machine; the default);
* :mod:`._group_commit`: the writes of a few event-loop turns in one transaction;
* :mod:`._postgres` (and its ``_postgres_*`` parts): :class:`PostgresJournal`, one batch
  shared by many workers on PostgreSQL (:class:`SharedJournal`: claims, leases, one budget,
  one rate limit per account). Needs ``omnivid[postgres]`` (psycopg 3); imported on first use.

:func:`open_journal` turns what a user passes as ``journal=`` into a backend (a path: SQLite);
:func:`connect_journal` also opens ``postgresql://`` URLs (async: it connects).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._base import (
    OPEN_STATES,
    TERMINAL_STATES,
    Claim,
    JobRow,
    JournalBackend,
    JournalEntry,
    JournalState,
    LeaseLostError,
    RateMemory,
    SharedJournal,
    Spending,
)
from ._sqlite import Journal

if TYPE_CHECKING:
    from ._postgres import PostgresJournal

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "Claim",
    "JobRow",
    "Journal",
    "JournalBackend",
    "JournalEntry",
    "JournalState",
    "LeaseLostError",
    "PostgresJournal",
    "RateMemory",
    "SharedJournal",
    "Spending",
    "connect_journal",
    "is_database_url",
    "open_journal",
]

_SCHEMES = ("postgresql://", "postgres://")


def __getattr__(name: str) -> Any:
    if name == "PostgresJournal":  # psycopg is an optional extra: imported on first use
        from ._postgres import PostgresJournal

        return PostgresJournal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_database_url(spec: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL: a shared journal's database."""
    return isinstance(spec, str) and spec.lower().startswith(_SCHEMES)


def open_journal(spec: str | os.PathLike[str] | JournalBackend) -> tuple[JournalBackend, bool]:
    """The backend for ``journal=`` and whether the caller opened it (and must close it): a
    path opens the SQLite journal there; a backend is used as it is. A database URL needs
    :func:`connect_journal` (it connects: async)."""
    if is_database_url(spec):
        raise ConfigurationError(
            "a PostgreSQL journal is opened with `await omnivid.journal.connect_journal(url, "
            "batch=NAME)` (client.map(journal=url, batch=NAME) does it)"
        )
    if isinstance(spec, str | os.PathLike):
        return Journal.open(spec), True
    return spec, False


async def connect_journal(
    spec: str | os.PathLike[str] | JournalBackend,
    *,
    batch: str | None = None,
    worker: str | None = None,
    lease: float = 120.0,
    preload: bool = False,
) -> tuple[JournalBackend, bool]:
    """:func:`open_journal`, and a ``postgresql://`` URL opens the :class:`PostgresJournal` of
    ``batch`` there (``worker``: this process's name in claims; ``lease``: seconds a claim
    lasts without renewal; ``preload``: read every row of the batch first, which a batch does
    not need: it claims each job). A ``ConfigurationError`` (one line naming the server) when
    the URL is malformed, the server cannot be reached or refuses."""
    if not is_database_url(spec):
        if batch is not None and not isinstance(spec, SharedJournal):
            raise ConfigurationError(
                f"batch={batch!r} names a batch of a shared (PostgreSQL) journal; "
                "this journal is not one"
            )
        return open_journal(spec)
    if batch is None:
        raise ConfigurationError(
            "a PostgreSQL journal needs batch=NAME: the batch the workers share"
        )
    assert isinstance(spec, str)
    try:
        from ._postgres import PostgresJournal
    except ImportError as exc:  # psycopg missing
        raise ConfigurationError(
            f"a PostgreSQL journal needs psycopg: pip install 'omnivid[postgres]' ({exc})"
        ) from None
    journal = await PostgresJournal.open(
        spec, batch=batch, worker=worker, lease=lease, preload=preload
    )
    return journal, True
