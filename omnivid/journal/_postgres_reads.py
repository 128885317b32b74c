"""The PostgreSQL journal's reads over a whole batch, and adding jobs to it: a part of
:class:`~omnivid.journal._postgres.PostgresJournal` (a mixin, for the module's size).

Reads are paged by key (one bounded query per page), so a batch of any size is read without
holding a connection between pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from .._models import VideoRequest
from ._base import JournalEntry
from ._postgres_schema import ROW_COLUMNS, Database, JobRow, job_row

__all__ = ["Reads"]


class Reads:
    """Batch-wide reads and :meth:`add_jobs` (see module)."""

    batch: str
    _cache: dict[str, JournalEntry]

    _db: Database  # (set by the journal)

    @property
    def db(self) -> Database:
        """The journal's database."""
        return self._db

    async def refresh(self) -> None:
        """Read every row of the batch into the cache."""
        self._cache = {row.key: row.entry async for row in self.rows()}

    async def fetch(self, keys: Iterable[str | int]) -> dict[str, JobRow]:
        """The rows of ``keys`` as the database has them now (and into the cache); jobs other
        workers finished are those whose ``entry.terminal``."""
        rows = await self.db.fetch(
            "reading jobs",
            f"SELECT {ROW_COLUMNS} FROM omnivid_jobs "
            "WHERE batch = %(batch)s AND key = ANY(%(key)s)",
            {"batch": self.batch, "key": [str(k) for k in keys]},
        )
        found = {row.key: row for row in map(job_row, rows)}
        self._cache.update((k, row.entry) for k, row in found.items())
        return found

    async def rows(self, *, page: int = 1000) -> AsyncIterator[JobRow]:
        """Every row of the batch, in key order (one bounded query per ``page`` rows)."""
        after: str | None = None
        while True:
            found = await self.db.fetch(
                "reading the batch",
                f"SELECT {ROW_COLUMNS} FROM omnivid_jobs WHERE batch = %(batch)s "
                "AND (%(after)s::text IS NULL OR key > %(after)s::text) ORDER BY key "
                "LIMIT %(page)s",
                {"batch": self.batch, "after": after, "page": page},
            )
            for row in found:
                yield job_row(row)
            if len(found) < page:
                return
            after = found[-1][0]

    async def results(self) -> AsyncIterator[JournalEntry]:
        """Every entry of the batch, in key order (for ``omnivid results``)."""
        async for row in self.rows():
            yield row.entry

    async def counts(self) -> dict[str, int]:
        """Rows per state; ``queued``: added or claimed, never written to."""
        rows = await self.db.fetch(
            "counting jobs",
            "SELECT state, count(*) FROM omnivid_jobs WHERE batch = %(batch)s GROUP BY state",
            {"batch": self.batch},
        )
        return {str(state): int(n) for state, n in rows}

    async def ambiguous(self) -> list[JobRow]:
        """Jobs left in ``intent`` by a worker whose lease ran out: their submit's answer is
        unknown (report them; never resubmitted unless claimed with ``ambiguous=True``)."""
        rows = await self.db.fetch(
            "reading ambiguous jobs",
            f"SELECT {ROW_COLUMNS} FROM omnivid_jobs WHERE batch = %(batch)s AND "
            "state = 'intent' AND (lease_until IS NULL OR lease_until <= now()) ORDER BY key",
            {"batch": self.batch},
        )
        return [job_row(row) for row in rows]

    async def add_jobs(
        self, jobs: Iterable[tuple[str | int, VideoRequest]], *, provider: str
    ) -> int:
        """Add ``queued`` rows for keys the batch does not have yet (any worker may then
        :meth:`claim_next` them); how many were new. One round trip per 1,000 jobs."""
        sql = (
            "INSERT INTO omnivid_jobs (batch, key, fingerprint, provider, model, request, state) "
            "VALUES (%(batch)s, %(key)s, %(fingerprint)s, %(provider)s, %(model)s, %(request)s, "
            "'queued') ON CONFLICT DO NOTHING"
        )
        added, chunk = 0, []
        for key, request in jobs:
            fingerprint, text = request.fingerprint_and_json()
            chunk.append(
                {"batch": self.batch, "key": str(key), "fingerprint": fingerprint,
                 "provider": provider, "model": request.model, "request": text}
            )  # fmt: skip
            if len(chunk) == 1000:
                added += await self._insert_many(sql, chunk)
                chunk = []
        if chunk:
            added += await self._insert_many(sql, chunk)
        return added

    async def _insert_many(self, sql: str, params: list[dict[str, Any]]) -> int:
        async with self.db.connection("adding jobs") as conn, conn.transaction():
            cur = conn.cursor()
            await cur.executemany(sql, params)
            self.db.round_trips += 1
            return max(cur.rowcount, 0)
