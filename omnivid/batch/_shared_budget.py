"""One budget per batch over every worker: ``max_cost`` against a shared journal's database.

:class:`SharedBudget` is the batch's :class:`~omnivid.batch._budget.Budget` when its journal is
a :class:`~omnivid.journal.SharedJournal` (PostgreSQL). The cap is checked by the database in
one statement (``reserve(amount, cap, key=)``: ``spent + reserved + amount <= cap`` over every
worker, run and kill), so two workers never both take the last room. Each job's part is kept
on its row (``key=``): whoever finishes a job settles what its reservation was, even one a
dead worker made, and a job's cost counts once however many times it is settled (``total``:
what the job cost so far).

Reserving is awaited (a submit waits for the answer). Adjustments, releases and settlements
are sent in the background, in order, by one task (:meth:`SharedBudget.run`); a reservation
first waits for those queued before it, so a job's own records never overtake each other.
Without a cap nothing is reserved; settlements are still recorded (a later run with a cap
counts them).

A refused reservation waits while this worker's own reservations may come back, as the local
budget does; once it holds none, the budget is closed for it: room held by other workers (or
by a dead worker's unanswered submits) is not waited for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from ..journal import SharedJournal, Spending
from ._budget import Budget

__all__ = ["SharedBudget"]

log = logging.getLogger("omnivid")
_EPS = 1e-9

Op = Callable[[], Awaitable[Spending]]


class SharedBudget(Budget):
    """The batch's budget in a shared journal's database (see the module docstring).

    ``spent`` and ``reserved`` stay this worker's; ``total_spent`` and ``total_reserved`` are
    the batch's over every worker, as the database last answered."""

    def __init__(self, limit: float | None, journal: SharedJournal) -> None:
        super().__init__(limit)
        self._journal = journal
        self._ops: deque[Op] = deque()
        self._pending = anyio.Event()
        self._lock = anyio.Lock()
        self._totals = Spending()
        self.error: BaseException | None = None  # the last background failure

    @property
    def total_spent(self) -> float:
        """Spent by the batch over every worker and run (the database's figure)."""
        return self._totals.spent

    @property
    def total_reserved(self) -> float:
        """Reserved by the batch over every worker (the database's figure)."""
        return self._totals.reserved

    async def start(self) -> None:
        """Read the batch's totals (when the batch starts)."""
        self._totals = await self._journal.budget()

    def load(self, spent: float, reserved: float) -> None:
        """The database holds the totals (see :meth:`start`)."""

    async def reserve(self, amount: float, *, key: str | None = None) -> bool:
        """Reserve ``amount`` in the database against the cap; False once closed (see the
        module docstring)."""
        limit = self.limit
        if limit is None:
            self.reserved += amount
            return True
        while not self.closed:
            await self.drain()
            if await self._journal.reserve(amount, limit, key=key):
                self.reserved += amount
                self._totals = Spending(self._totals.spent, self._totals.reserved + amount)
                return True
            if self.reserved <= _EPS:
                self.closed = True
                self._totals = await self._journal.budget()
                log.info(
                    "budget reached (spent %.4g + reserved %.4g of %.4g over every worker): "
                    "no new submits",
                    self.total_spent,
                    self.total_reserved,
                    limit,
                )
                break
            await self._wait_for_change()
        return False

    def adjust(self, old: float, new: float, *, key: str | None = None) -> None:
        """A reservation changed (the provider's figure): here, then in the database."""
        super().adjust(old, new)
        if self.limit is not None:
            self._queue(lambda: self._journal.adjust(old, new, key=key))

    def release(self, reserved: float, *, key: str | None = None) -> None:
        """Give a reservation back: here, then in the database."""
        super().release(reserved)
        if self.limit is not None:
            self._queue(lambda: self._journal.release(reserved, key=key))

    def settle(
        self, reserved: float, cost: float, *, key: str | None = None, total: float | None = None
    ) -> None:
        """A task ended: here, then in the database (with ``key``, the job's ``total``)."""
        super().settle(reserved, cost)
        amount = cost if key is None or total is None else total
        self._queue(lambda: self._journal.settle(reserved, amount, key=key))

    def describe(self, amount: float) -> str:
        """Why ``amount`` does not fit (the batch's totals over every worker)."""
        return (
            f"not submitted: the budget max_cost={self.limit:g} of the batch is reached over "
            f"every worker (spent {self.total_spent:.4g}, reserved {self.total_reserved:.4g}, "
            f"this job needs about {amount:.4g})"
        )

    def _queue(self, op: Op) -> None:
        self._ops.append(op)
        self._pending.set()

    async def run(self) -> None:
        """Send the queued records, in order, until cancelled (a failure is logged and the
        record retried on the next change)."""
        while True:
            await self._pending.wait()
            self._pending = anyio.Event()
            try:
                await self._send()
            except Exception as exc:
                self.error = exc
                log.warning("budget records held (%s): retried on the next change", exc)

    async def drain(self) -> None:
        """Send what is queued now (raises the database's error; the records stay queued)."""
        if self._ops:
            await self._send()

    async def _send(self) -> None:
        async with self._lock:  # one sender at a time: each record is sent once, in order
            while self._ops:
                with anyio.CancelScope(shield=True):  # a statement cut off costs a connection
                    self._totals = await self._ops[0]()
                self._ops.popleft()
                self.error = None
