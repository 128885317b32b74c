"""An account's rate limit shared by every worker: what :class:`~omnivid._http.gate.AccountGate`
needs from a shared state (:class:`SharedGate`, a Protocol: the PostgreSQL journal's
``PostgresGateState`` is one, and ``_http`` never imports the journal) and the gate's side of it
(:class:`SharedPacing`).

With a shared state (``AccountGate.share``), every request of the account, in every worker:

* **books its slot in the shared state** (one round trip): the state spaces the account's
  slots ``1 / rate`` apart on *its* clock (the database's, so hosts' clocks never matter) and
  after any cooldown; the worker sleeps the duration it answers. A worker that waited more than
  ``_RECHECK`` seconds reads the state again before sending: a 429 another worker got meanwhile
  closes the account for it too (it sleeps the rest and books again);
* **a 429 closes the account for all** (``close_until``), pushed at once by a background task;
* **the adaptive rate** is still computed by each worker's gate, from the account's slots
  booked since the last storm (every worker's: the estimate of the server's limit) and what it
  saw scaled to the account (``share``: the account's slots per slot of this worker, for its
  observed rate), and pushed to the state: at once after a cut, with compare-and-set
  (``expect``) when it grows, so a stale grower never undoes another worker's cut. A worker
  adopts the rate and known limit another worker pushed at its next booking (the state's
  ``version`` moved). A shared gate never probes by doubling above a first estimate (each
  worker would compound the others' probes): every estimate is taken as the limit, and the
  rate creeps above it linearly, each worker growing it by its share of the time.

If the state cannot be reached, the booking raises (``DatabaseUnavailableError``): the request
is not sent. There is no per-process fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .._aio import clock as _clock

if TYPE_CHECKING:
    from .gate import AccountGate

__all__ = ["SharedBooking", "SharedGate", "SharedGateView", "SharedPacing", "account_name"]

log = logging.getLogger("omnivid")

_RECHECK = 0.02  # seconds waited for a slot past which the state is read again before sending
_PUSH_EVERY = 0.2  # seconds between two pushes of a grown rate
_PUSH_CHANGE = 0.03  # a grown rate is pushed once it moved this much (relative)


class SharedBooking(Protocol):
    """A booked slot, as :meth:`SharedGate.book` answers it."""

    @property
    def wait(self) -> float:
        """Seconds until the slot."""
        ...

    @property
    def rate(self) -> float | None:
        """The account's shared rate (None: no limit)."""
        ...

    @property
    def version(self) -> int:
        """Moves at every change of rate or cooldown."""
        ...

    @property
    def sent(self) -> int:
        """Slots booked so far for the account, by every worker."""
        ...

    @property
    def adaptive(self) -> Mapping[str, Any]:
        """The adaptive limiter's state the workers share (``limit``, ``provisional``)."""
        ...


class SharedGateView(Protocol):
    """The account's state now, as :meth:`SharedGate.state` reads it."""

    @property
    def closed_for(self) -> float:
        """Seconds until a cooldown ends (0: open)."""
        ...


class SharedGate(Protocol):
    """An account limiter's state shared by workers (see the module docstring)."""

    async def book(self, account: str, rate: float | None = None) -> SharedBooking:
        """Book the account's next slot (``rate`` seeds an account without one)."""
        ...

    async def close_until(self, account: str, seconds: float) -> float:
        """Close the account for ``seconds`` (never shortening a cooldown)."""
        ...

    async def set_rate(
        self,
        account: str,
        rate: float | None,
        *,
        adaptive: Mapping[str, Any] | None = None,
        expect: int | None = None,
    ) -> bool:
        """Set the shared rate (compare-and-set on ``version`` with ``expect``)."""
        ...

    async def state(self, account: str) -> SharedGateView:
        """The account's state now."""
        ...


def account_name(provider: str, base_url: str, api_key: str) -> str:
    """A stable name for a provider account that does not reveal its key:
    ``provider base_url sha256(key)[:16]`` (as the journal's ``account_id``)."""
    import hashlib

    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{provider} {base_url.rstrip('/')} {digest}"


class SharedPacing:
    """A gate's link to the shared state of its account (see the module docstring)."""

    def __init__(self, state: SharedGate, account: str) -> None:
        self.state = state
        self.account = account
        self.version = -1  # the state's version as last seen
        self.sent = 0  # the account's slots booked, as last seen
        self.booked = 0  # of which this gate's
        self._mark = (0, 0)  # (sent, booked) at the last storm
        self._pushed: float | None = None
        self._pushed_at = float("-inf")
        self._tasks: set[asyncio.Task[Any]] = set()
        self.error: BaseException | None = None  # the last background push's failure

    async def acquire(self, gate: AccountGate) -> None:
        """Wait for the account's next shared slot (see the module docstring)."""
        while True:
            booking = await self.state.book(self.account, gate.rate)
            self.booked += 1
            self.sent = booking.sent
            if booking.version != self.version:
                self.version = booking.version
                if booking.rate != self._pushed:  # another worker's rate (or a new run's)
                    gate._adopt(booking.rate, booking.adaptive)
            wait = booking.wait
            if wait <= 0:
                return
            gate._last_wait = _clock.now()
            await anyio.sleep(wait)
            if wait < _RECHECK:
                return
            closed = (await self.state.state(self.account)).closed_for
            if closed <= 0:
                return
            await anyio.sleep(closed)  # a 429 elsewhere closed the account meanwhile

    def share(self) -> float:
        """The account's slots booked per slot this gate booked, since the last storm."""
        sent, booked = self._mark
        mine = self.booked - booked
        return max(1.0, (self.sent - sent) / mine) if mine > 0 else 1.0

    def sent_since_mark(self) -> int:
        """The account's slots booked (by every worker) since the last storm."""
        return self.sent - self._mark[0]

    def mark(self) -> None:
        """A storm: the next :meth:`share` counts from here."""
        self._mark = (self.sent, self.booked)

    def closed(self, pause: float) -> None:
        """A 429 closed this gate for ``pause`` seconds: close the account for every worker."""
        self._spawn(self.state.close_until(self.account, pause))

    def pushed(self, gate: AccountGate, *, cut: bool) -> None:
        """The gate's rate or known limit changed: push it (a cut at once, unconditionally; a
        growth now and then, compare-and-set)."""
        rate = gate.rate
        now = _clock.now()
        if not cut:
            if now - self._pushed_at < _PUSH_EVERY:
                return
            old = self._pushed
            if rate is not None and old is not None and abs(rate - old) <= _PUSH_CHANGE * old:
                return
            if rate == old:
                return
        self._pushed, self._pushed_at = rate, now
        expect = None if cut else self.version
        adaptive = gate._shared_limits()
        self._spawn(self.state.set_rate(self.account, rate, adaptive=adaptive, expect=expect))

    def _spawn(self, call: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await call
            except Exception as exc:  # the next booking raises too: nothing is sent
                self.error = exc
                log.warning("the account's shared rate state was not updated: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait for the pushes still running."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
