"""The money side of a batch: ``max_cost`` as reservations and spending.

Amounts are in the provider's billing unit (APIMart currency, EvoLink credits). Before its
submit a job reserves its estimated cost; the reservation is replaced by the provider's own
figure once known, and by the actual cost when the task ends (a refused submit gives it back;
an ambiguous one, or a task whose polls failed, counts it as spent, since the provider may be
billing it)::

    a job may be submitted  iff  earlier + held + spent + reserved + estimate <= max_cost
    it waits                while that fails but this batch's reservations could come back
    the budget closes       once even earlier + held + spent + estimate > max_cost, or this
                            batch reserves nothing

Without a journal, ``earlier`` and ``held`` are 0: the cap covers one call. With a journal they
come from it when the batch starts (:meth:`~omnivid.journal.JournalBackend.spending`), so the
cap covers every run of that journal: ``earlier`` is what its finished tasks cost, ``held`` the
reservations of its open entries (submits whose answer was never recorded, tasks still
running). A job the batch resumes takes its entry's reservation over from ``held``
(:meth:`Budget.take_over`); the rest of ``held`` stays counted for the whole batch.

Once closed, no new task is submitted: every remaining job ends ``not_submitted``.

With a shared journal (PostgreSQL) the batch's budget is the database's, one for every worker:
:class:`~omnivid.batch._shared_budget.SharedBudget`. Every call names the job (``key``, and
for a settlement its ``total`` cost so far), which this class ignores.
"""

from __future__ import annotations

import logging

import anyio

__all__ = ["Budget"]

log = logging.getLogger("omnivid")
_EPS = 1e-9


class Budget:
    """Reservations and spending against an optional limit (see the module docstring).

    ``spent`` and ``reserved`` are this batch's; ``earlier`` and ``held`` what its journal
    counted when the batch started (minus the reservations the batch took over)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0
        self.earlier = 0.0
        self.held = 0.0
        self.closed = False
        self._changed = anyio.Event()
        self._waiting = 0  # reserve calls waiting for a change

    def __repr__(self) -> str:
        return (
            f"<Budget spent={self.total_spent:g} reserved={self.total_reserved:g} of {self.limit}>"
        )

    @property
    def total_spent(self) -> float:
        """Spent over every run this budget knows of (the journal's runs and this one)."""
        return self.earlier + self.spent

    @property
    def total_reserved(self) -> float:
        """Reserved now: by this batch and by the journal's open entries it did not take."""
        return self.held + self.reserved

    def load(self, spent: float, reserved: float) -> None:
        """Count what the journal recorded before this batch: ``spent`` by finished tasks,
        ``reserved`` by open entries."""
        self.earlier = spent
        self.held = reserved

    def take_over(self, amount: float, *, key: str | None = None) -> None:
        """A resumed job owns its entry's reservation ``amount`` from now on (it comes back
        or becomes spending with the job)."""
        held = self.held - amount
        self.held = held if held > _EPS else 0.0  # (float sums of the same amounts)
        self.reserved += amount

    async def reserve(self, amount: float, *, key: str | None = None) -> bool:
        """Reserve ``amount``, waiting while in-flight reservations might free room.
        False when the budget is (or becomes) closed."""
        limit = self.limit
        if limit is None:
            self.reserved += amount
            return True
        while not self.closed:
            fixed = self.earlier + self.held + self.spent  # comes back to nobody
            if fixed + self.reserved + amount <= limit + _EPS:
                self.reserved += amount
                return True
            if self.reserved <= _EPS or fixed + amount > limit + _EPS:
                self.closed = True
                log.info(
                    "budget reached (spent %.4g + reserved %.4g of %.4g): no new submits",
                    self.total_spent,
                    self.total_reserved,
                    limit,
                )
                break
            await self._wait_for_change()
        return False

    async def _wait_for_change(self) -> None:
        """Wait until a reservation or a spending changes (``_notify``)."""
        self._waiting += 1
        try:
            await self._changed.wait()
        finally:
            self._waiting -= 1

    def adjust(self, old: float, new: float, *, key: str | None = None) -> None:
        """A reservation changed from ``old`` to ``new`` (the provider reported its figure)."""
        self.reserved += new - old
        self._notify()

    def release(self, reserved: float, *, key: str | None = None) -> None:
        """Give a reservation back (the job was not submitted)."""
        self.reserved -= reserved
        self._notify()

    def settle(
        self, reserved: float, cost: float, *, key: str | None = None, total: float | None = None
    ) -> None:
        """A task ended costing ``cost``: its reservation becomes spending (``total``: what
        the job cost so far, this task included)."""
        self.reserved -= reserved
        self.spent += cost
        self._notify()

    def hand_over(self, amount: float) -> None:
        """Another worker took the job holding ``amount`` over (a shared journal): it is
        no longer this batch's reservation (the journal keeps it with the job)."""
        self.reserved -= amount
        self._notify()

    def describe(self, amount: float) -> str:
        """Why ``amount`` does not fit, for a ``BudgetExceededError``."""
        earlier = " over every run of the journal" if self.earlier or self.held else ""
        return (
            f"not submitted: the budget max_cost={self.limit:g} is reached{earlier} (spent "
            f"{self.total_spent:.4g}, reserved {self.total_reserved:.4g}, this job needs about "
            f"{amount:.4g})"
        )

    def _notify(self) -> None:
        if not self._waiting:  # nobody to wake (always so without a limit)
            return
        self._changed.set()
        self._changed = anyio.Event()
