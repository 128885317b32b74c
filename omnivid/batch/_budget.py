"""The money side of a batch: ``max_cost`` as reservations and spending.

Amounts are in the provider's billing unit (APIMart currency, EvoLink credits). Before its
submit a job reserves its estimated cost; the reservation is replaced by the provider's own
figure once known, and by the actual cost when the task ends (a refused submit gives it back;
an ambiguous one counts it as spent, since the provider may be billing it)::

    a job may be submitted  iff  spent + reserved + estimate <= max_cost
    it waits                while that fails but reservations could still come back
    the budget closes       once even spent + estimate > max_cost, or nothing is reserved

Once closed, no new task is submitted: every remaining job ends ``not_submitted``.
"""

from __future__ import annotations

import logging

import anyio

__all__ = ["Budget"]

log = logging.getLogger("omnivid")
_EPS = 1e-9


class Budget:
    """Reservations and spending against an optional limit."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0
        self.closed = False
        self._changed = anyio.Event()
        self._waiting = 0  # reserve calls waiting for a change

    def __repr__(self) -> str:
        return f"<Budget spent={self.spent:g} reserved={self.reserved:g} of {self.limit}>"

    async def reserve(self, amount: float) -> bool:
        """Reserve ``amount``, waiting while in-flight reservations might free room.
        False when the budget is (or becomes) closed."""
        limit = self.limit
        if limit is None:
            self.reserved += amount
            return True
        while not self.closed:
            if self.spent + self.reserved + amount <= limit + _EPS:
                self.reserved += amount
                return True
            if self.reserved <= _EPS or self.spent + amount > limit + _EPS:
                self.closed = True
                log.info(
                    "budget reached (spent %.4g + reserved %.4g of %.4g): no new submits",
                    self.spent,
                    self.reserved,
                    limit,
                )
                break
            self._waiting += 1
            try:
                await self._changed.wait()
            finally:
                self._waiting -= 1
        return False

    def adjust(self, old: float, new: float) -> None:
        """A reservation changed from ``old`` to ``new`` (the provider reported its figure)."""
        self.reserved += new - old
        self._notify()

    def release(self, reserved: float) -> None:
        """Give a reservation back (the job was not submitted)."""
        self.reserved -= reserved
        self._notify()

    def settle(self, reserved: float, cost: float) -> None:
        """A task ended costing ``cost``: its reservation becomes spending."""
        self.reserved -= reserved
        self.spent += cost
        self._notify()

    def describe(self, amount: float) -> str:
        """Why ``amount`` does not fit, for a ``BudgetExceededError``."""
        return (
            f"not submitted: the budget max_cost={self.limit:g} is reached (spent "
            f"{self.spent:.4g}, reserved {self.reserved:.4g}, this job needs about {amount:.4g})"
        )

    def _notify(self) -> None:
        if not self._waiting:  # nobody to wake (always so without a limit)
            return
        self._changed.set()
        self._changed = anyio.Event()
