"""The SQLite journal's memory of each account's learnt rate (:class:`._base.RateMemory`),
kept in its ``meta`` table as ``rate:ACCOUNT`` (the account's name holds no key)."""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

__all__ = ["SqliteRates"]


class _Database(Protocol):
    """What the mixin uses of the SQLite ``Journal``."""

    def _query(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor: ...

    def _write(self, sql: str, params: tuple[Any, ...]) -> bool: ...


class SqliteRates:
    """Mixed into the SQLite ``Journal`` (which provides ``_query`` and ``_write``)."""

    def learned_rate(self: _Database, account: str) -> float | None:
        """The rate remembered for ``account`` (requests/s), or None."""
        row = self._query("SELECT value FROM meta WHERE name = ?", (f"rate:{account}",)).fetchone()
        try:
            return float(row[0]) if row is not None else None
        except ValueError:
            return None

    def remember_rate(self: _Database, account: str, rate: float) -> None:
        """Remember ``rate`` for ``account`` (committed at once)."""
        self._write(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (f"rate:{account}", repr(float(rate))),
        )
