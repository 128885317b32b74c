"""One budget per batch over every worker, run and kill: the ``omnivid_budgets`` row.

The row holds the batch's ``spent`` and ``reserved`` totals. Each change is **one statement**
(its own transaction), so concurrent workers never read-modify-write::

    reserve(amount, cap)   UPDATE ... SET reserved = reserved + amount
                           WHERE spent + reserved + amount <= cap   (True iff a row changed)
    settle(reserved, cost) reserved -= reserved; spent += cost
    release(reserved)      reserved -= reserved

With ``key=`` the job's row keeps its part in the same statement (``omnivid_jobs.held``: its
reservation there, and ``charged``: the cost already counted as spent), so whoever finishes a
job settles what *its* reservation was, even when another worker, since dead, made it;
settling a job twice counts its cost once (``spent += cost - charged``). A dead worker's
reservations stay counted (the provider may be billing them) until their jobs are settled or
released by whoever resumes them: the cap is never exceeded by a crash, only held back.
"""

from __future__ import annotations

from typing import Any

from ._base import Spending
from ._postgres_schema import Database

__all__ = ["Money"]

_EPS = 1e-9
_RESERVE = """
WITH b AS (
    UPDATE omnivid_budgets SET reserved = reserved + %(amount)s, updated_at = clock_timestamp()
    WHERE batch = %(batch)s
      AND (%(cap)s::float8 IS NULL OR spent + reserved + %(amount)s <= %(cap)s::float8 + %(eps)s)
    RETURNING spent, reserved
), j AS (
    UPDATE omnivid_jobs SET held = held + %(amount)s
    WHERE batch = %(batch)s AND key = %(key)s::text AND EXISTS (SELECT 1 FROM b)
)
SELECT spent, reserved FROM b
"""
# with a key: the job's own reservation and charge are used (FOR UPDATE: one settler at a time)
_JOB_MOVE = """
WITH o AS (
    SELECT held, charged FROM omnivid_jobs
    WHERE batch = %(batch)s AND key = %(key)s FOR UPDATE
), j AS (
    UPDATE omnivid_jobs SET held = {job_held}, charged = {job_charged}
    WHERE batch = %(batch)s AND key = %(key)s
)
UPDATE omnivid_budgets SET
    reserved = reserved - (SELECT coalesce(sum(held), 0) FROM o) + %(new)s,
    spent = spent + {spent_delta}, updated_at = clock_timestamp()
WHERE batch = %(batch)s RETURNING spent, reserved
"""
_MOVE = """
UPDATE omnivid_budgets SET reserved = reserved - %(old)s + %(new)s, spent = spent + %(cost)s,
    updated_at = clock_timestamp()
WHERE batch = %(batch)s RETURNING spent, reserved
"""
_JOB_SQL = {
    "settle": _JOB_MOVE.format(
        job_held="0",
        job_charged="%(cost)s",
        spent_delta="%(cost)s - (SELECT coalesce(sum(charged), 0) FROM o)",
    ),
    "release": _JOB_MOVE.format(job_held="0", job_charged="charged", spent_delta="0"),
    "adjust": _JOB_MOVE.format(job_held="%(new)s", job_charged="charged", spent_delta="0"),
}


class Money:
    """The budget methods of :class:`~omnivid.journal._postgres.PostgresJournal` (see
    module)."""

    batch: str

    _db: Database  # (set by the journal)

    @property
    def db(self) -> Database:
        """The journal's database."""
        return self._db

    async def reserve(self, amount: float, cap: float | None, *, key: str | None = None) -> bool:
        """Reserve ``amount`` if ``spent + reserved + amount <= cap`` over every worker (no cap:
        always); with ``key``, the job's row records it too. True when reserved."""
        rows = await self.db.fetch(
            "reserving budget",
            _RESERVE,
            {"batch": self.batch, "amount": amount, "cap": cap, "eps": _EPS, "key": key},
        )
        return bool(rows)

    async def settle(self, reserved: float, cost: float, *, key: str | None = None) -> Spending:
        """A job ended costing ``cost``: its reservation becomes spending. With ``key`` the
        job's recorded reservation is the one settled (``reserved`` is not used) and a second
        settle of the job corrects the first instead of adding to it."""
        return await self._move("settle", key, old=reserved, new=0.0, cost=cost)

    async def release(self, reserved: float, *, key: str | None = None) -> Spending:
        """Give a reservation back (the job was not submitted); with ``key``, the job's."""
        return await self._move("release", key, old=reserved, new=0.0, cost=0.0)

    async def adjust(self, old: float, new: float, *, key: str | None = None) -> Spending:
        """A reservation changed from ``old`` to ``new`` (the provider's own figure); with
        ``key``, the job's recorded reservation is replaced by ``new``."""
        return await self._move("adjust", key, old=old, new=new, cost=0.0)

    async def budget(self) -> Spending:
        """The batch's budget row now: spent and reserved over every worker."""
        rows = await self.db.fetch(
            "reading the budget",
            "SELECT spent, reserved FROM omnivid_budgets WHERE batch = %(batch)s",
            {"batch": self.batch},
        )
        return _spending(rows)

    async def _move(
        self, what: str, key: str | None, *, old: float, new: float, cost: float
    ) -> Spending:
        params = {"batch": self.batch, "key": key, "old": old, "new": new, "cost": cost}
        sql = _MOVE if key is None else _JOB_SQL[what]
        rows = await self.db.fetch(f"budget: {what}", sql, params)
        return _spending(rows)


def _spending(rows: list[tuple[Any, ...]]) -> Spending:
    return Spending(spent=float(rows[0][0]), reserved=float(rows[0][1])) if rows else Spending()
