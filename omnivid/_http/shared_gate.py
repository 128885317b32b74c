"""An account's rate limit shared by every worker: what :class:`~omnivid._http.gate.AccountGate`
needs from a shared state (:class:`SharedGate`, a Protocol: the PostgreSQL journal's
``PostgresGateState`` is one, and ``_http`` never imports the journal) and the gate's side of it
(:class:`SharedPacing`).

With a shared state (``AccountGate.share``), every request of the account, in every worker:

* **books its slot in the shared state** (one round trip): the state spaces the account's
  slots ``1 / rate`` apart on *its* clock (the database's, so hosts' clocks never matter) and
  after any cooldown; the worker sleeps the duration it answers. While the account is closed a
  booking takes no slot: it answers the wait until the reopening, and the worker books then,
  at the rate set meanwhile (slots booked during a cooldown at the rate before the storm's
  estimate would hold the account to it long after). A worker that waited more than
  ``_RECHECK`` seconds reads the state again before sending: a 429 another worker got meanwhile
  closes the account for it too (it sleeps the rest and books again);
* **a 429 closes the account for all** (:meth:`SharedGate.storm`), at once by a background
  task, which also learns whether it began a new **storm of the account** (the account was
  open and the request left after the last storm began: what every worker's 429s in one storm
  share). Only that worker adapts the rate, from what the state counted for the account since
  the previous storm (every worker's answers other than 429, each reported with its next
  booking or 429; timed by the state's clock). Answers to requests sent before the storm are
  still being reported when it starts, so the count is read ``_LATE`` of the cooldown later
  (:meth:`SharedGate.refine`, which also ends the count there; nobody books while the account
  is closed, so every worker that learns of the cooldown reports the answers it got since,
  ``_LATE / 2`` of it later: :meth:`SharedGate.report`); a gate that knows no limit
  yet cuts at once on the count so far (a ramp must stop), then again on the late count::

      T' = T - P + min(P, burst)    (T: seconds since the previous storm, P: its pause)
      T' = T + burst                (no previous storm: since the account was first booked,
                                     or again after being idle, with the server's bucket full)
      E  = S / T'                   (S: the account's answers other than 429 in T; S >= 5)

  the policy, with ``L`` the account's known limit (``at_limit``, ``spread``: the gate's)::

      L unknown:          L = E (no E: r' = decrease * r)
      E >= at_limit * L:  L = E   (the server let through about L: its limit, up or down)
      otherwise:          ignored (a storm within the limit: random 429s), unless the last
                          _CONFIRM storms all read below at_limit * L, within a factor
                          ``spread``: then L = the highest of them
      every cut:          r' = settle * L

  and pushes rate and limit to the state (a cut at once, unconditionally; a growth now and
  then with compare-and-set on ``version``, so a stale grower never undoes a cut). Every
  worker adopts what another pushed at its next booking (the state's ``version`` moved).
  Growth is the gate's (restore to ``settle * L``, then a slow linear probe), each worker
  growing the rate by its share of the time (``share``: the account's answers per answer of
  this worker). A probe above the limit costs a whole cooldown for every worker, so the slow
  probe starts only ``P / _PROBE_COST`` seconds after a storm's cooldown P: at most about
  ``_PROBE_COST`` of the time is lost to probes. That wait goes with the pushed rate
  (``quiet``, seconds left), so no worker probes before it is over. A shared gate never
  probes by doubling (each worker would compound the others' probes).

If the state cannot be reached, the booking raises (``DatabaseUnavailableError``): the request
is not sent. There is no per-process fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from .._aio import clock as _clock

if TYPE_CHECKING:
    from .gate import AccountGate

__all__ = [
    "SharedBooking",
    "SharedGate",
    "SharedGateView",
    "SharedPacing",
    "SharedStorm",
    "account_name",
]

log = logging.getLogger("omnivid")
_T = TypeVar("_T")

_RECHECK = 0.02  # seconds waited for a slot past which the state is read again before sending
_PUSH_EVERY = 0.2  # seconds between two pushes of a grown rate
_PUSH_CHANGE = 0.03  # a grown rate is pushed once it moved this much (relative)
_PROBE_COST = 0.02  # the share of time a slow probe's failure may cost (see the docstring)
_CONFIRM = 3  # storms in a row below the known limit that lower it
_MIN_OKS = 5  # answers an estimate needs
_LATE = 0.5  # the share of a storm's cooldown after which its late reports are in


class SharedBooking(Protocol):
    """A booked slot, as :meth:`SharedGate.book` answers it."""

    @property
    def wait(self) -> float:
        """Seconds until the slot."""
        ...

    @property
    def closed(self) -> bool:
        """The account is closed: no slot was booked; ``wait`` is until it reopens."""
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
    def oks(self) -> int:
        """Answers other than 429 reported so far for the account, by every worker."""
        ...

    @property
    def adaptive(self) -> Mapping[str, Any]:
        """The adaptive limiter's state the workers share (``limit``, ``provisional``)."""
        ...


class SharedStorm(Protocol):
    """A 429 as :meth:`SharedGate.storm` answers it."""

    @property
    def closed_for(self) -> float:
        """Seconds until the account reopens."""
        ...

    @property
    def new(self) -> bool:
        """It began a new storm of the account (the account was open, and its request left
        after the last storm began)."""
        ...

    @property
    def oks(self) -> int:
        """(new) The account's answers other than 429 since the previous storm or anchor."""
        ...

    @property
    def span(self) -> float | None:
        """(new) Seconds since the previous storm or anchor (None: unknown)."""
        ...

    @property
    def pause(self) -> float | None:
        """(new) Seconds the previous storm closed the account for (None: an anchor)."""
        ...

    @property
    def at(self) -> object:
        """(new) The storm's start, as :meth:`SharedGate.refine` takes it."""
        ...


class SharedGateView(Protocol):
    """The account's state now, as :meth:`SharedGate.state` reads it."""

    @property
    def closed_for(self) -> float:
        """Seconds until a cooldown ends (0: open)."""
        ...


class SharedGate(Protocol):
    """An account limiter's state shared by workers (see the module docstring)."""

    async def book(self, account: str, rate: float | None = None, oks: int = 0) -> SharedBooking:
        """Book the account's next slot (``rate`` seeds an account nobody set); ``oks``: the
        caller's answers other than 429 since its last booking."""
        ...

    async def storm(
        self, account: str, seconds: float, sent_ago: float | None = None, oks: int = 0
    ) -> SharedStorm:
        """A 429: close the account for ``seconds`` (never shortening a cooldown); did it
        begin a new storm (``sent_ago``: seconds since its request left)? ``oks``: the
        caller's answers other than 429 not yet reported."""
        ...

    async def refine(self, account: str, at: object) -> int | None:
        """The answers reported since the storm that began ``at`` (None: another began)."""
        ...

    async def report(self, account: str, oks: int) -> None:
        """Add the caller's answers other than 429 not yet reported (no booking)."""
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
        self.oks = 0  # the account's answers other than 429, as last seen
        self.mine = 0  # of which this gate's (reported or not)
        self._unreported = 0  # this gate's answers not yet added to the account's count
        self._mark = (0, 0)  # (oks, mine) at the last storm
        self._lows: deque[float] = deque(maxlen=_CONFIRM)  # estimates below the known limit
        self.probe_after = float("-inf")  # no slow probe before (the gate's clock)
        self._pushed: float | None = None
        self._pushed_at = float("-inf")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refining: set[asyncio.Task[Any]] = set()
        self._later = False  # a growth push is due (_PUSH_EVERY after the last one)
        self._flushing = False  # a report of the answers is due during a cooldown
        self.error: BaseException | None = None  # the last background push's failure

    async def acquire(self, gate: AccountGate) -> None:
        """Wait for the account's next shared slot (see the module docstring)."""
        while True:
            booking = await self._reporting(partial(self.state.book, self.account, gate.rate))
            if self.version == -1:  # the first booking: count from here, not from the
                self._mark = (booking.oks, 0)  # account's earlier runs and workers
            self.oks = booking.oks
            if booking.version != self.version:
                self.version = booking.version
                if booking.rate != self._pushed:  # another worker's rate (or a new run's)
                    gate._adopt(booking.rate, booking.adaptive)
                    quiet = booking.adaptive.get("quiet")
                    if isinstance(quiet, int | float) and quiet > 0:  # no slow probe till then
                        self.probe_after = max(self.probe_after, _clock.now() + quiet)
            wait = booking.wait
            if booking.closed:
                self._flush_during(wait)
            if wait <= 0:
                return
            gate._last_wait = _clock.now()
            await anyio.sleep(wait)
            if booking.closed:  # no slot taken while closed: book at the reopening's rate
                continue
            if wait < _RECHECK:
                return
            closed = (await self.state.state(self.account)).closed_for
            if closed <= 0:
                return
            await anyio.sleep(closed)  # a 429 elsewhere closed the account meanwhile

    async def _reporting(self, call: Callable[[int], Awaitable[_T]]) -> _T:
        """``call(oks)`` with this gate's answers not yet reported, which it reports; they
        stay unreported if it fails."""
        unreported, self._unreported = self._unreported, 0
        try:
            return await call(unreported)
        except BaseException:
            self._unreported += unreported
            raise

    def succeeded(self) -> None:
        """An answer other than 429 to this gate: reported with its next booking."""
        self.mine += 1
        self._unreported += 1

    def share(self) -> float:
        """The account's answers per answer of this gate, since its last storm."""
        oks, mine = self._mark
        mine = self.mine - mine
        return max(1.0, (self.oks + self._unreported - oks) / mine) if mine > 0 else 1.0

    def closed(self, gate: AccountGate, pause: float, sent_ago: float | None) -> None:
        """A 429 closed this gate for ``pause`` seconds (its request left ``sent_ago``
        seconds ago): close the account for every worker and, if this began a storm of the
        account, adapt the rate (see the module docstring)."""

        async def report() -> None:
            storm = await self._reporting(partial(self.state.storm, self.account, pause, sent_ago))
            self._flush_during(storm.closed_for)
            if not storm.new or not gate.adaptive:
                return
            if gate.known_limit is None:  # (a ramp must stop now: cut on what is known)
                self.on_storm(gate, storm, storm.oks)
            self._spawn(refine(storm), wait=False)

        async def refine(storm: SharedStorm) -> None:
            await anyio.sleep(storm.closed_for * _LATE)
            late = await self.state.refine(self.account, storm.at)
            if late is not None:
                self.on_storm(gate, storm, storm.oks + late)

        self._spawn(report())

    def _flush_during(self, closed_for: float) -> None:
        """The account is closed for ``closed_for`` seconds: nothing is booked meanwhile, so
        report the answers still arriving (to requests sent before the storm) before its count
        is read (``_LATE`` of the cooldown), once per cooldown."""
        if self._flushing:
            return
        self._flushing = True

        async def flush() -> None:
            try:
                await anyio.sleep(closed_for * _LATE * 0.5)
                if self._unreported:
                    await self._reporting(partial(self.state.report, self.account))
            finally:
                self._flushing = False

        self._spawn(flush(), wait=False)

    def on_storm(self, gate: AccountGate, storm: SharedStorm, oks: int) -> None:
        """A new storm of the account (this gate's 429 began it), ``oks`` the account's
        answers other than 429 since the previous one: the policy of the module docstring."""
        now = _clock.now()
        self.probe_after = now + storm.closed_for / _PROBE_COST
        estimate = None
        if storm.span is not None and oks >= _MIN_OKS:
            pause = storm.pause
            span = storm.span + gate.burst if pause is None else storm.span - pause
            span += 0.0 if pause is None else min(pause, gate.burst)
            if span >= gate.estimate_window:
                estimate = gate.limit_estimate = oks / span
        gate._scale = self.share()
        self._mark = (self.oks + self._unreported, self.mine)
        cuts, limit = gate.cuts, gate.known_limit
        if limit is None:
            if estimate is not None:
                gate._ramping = False  # a storm ends the slow start
                gate._cut_to(estimate, provisional=False)
            else:
                gate._discover(now, None)
        elif estimate is not None and estimate >= gate.at_limit * limit:
            self._lows.clear()
            gate._cut_to(estimate, provisional=False)
        else:
            gate.ignored += 1
            lows = self._lows
            if estimate is not None:
                lows.append(estimate)
            if len(lows) == _CONFIRM and max(lows) <= gate.spread * min(lows):
                gate._cut_to(max(lows), provisional=False)
                lows.clear()
        if gate.cuts != cuts:
            self.pushed(gate, cut=True)

    def pushed(self, gate: AccountGate, *, cut: bool) -> None:
        """The gate's rate or known limit changed: push it (a cut at once, unconditionally; a
        growth by more than _PUSH_CHANGE, at most every _PUSH_EVERY seconds, the last one
        included, compare-and-set; the end of the slow start, no limit, at once)."""
        rate = gate.rate
        now = _clock.now()
        if not cut:
            old = self._pushed
            if rate == old:
                return
            if rate is not None and old is not None:  # (to or from no limit: at once)
                if abs(rate - old) <= _PUSH_CHANGE * old:
                    return
                due = self._pushed_at + _PUSH_EVERY - now
                if due > 0:  # pushed then, whatever the rate does meanwhile
                    if not self._later:
                        self._later = True
                        self._spawn(self._push_later(gate, due), wait=False)
                    return
        self._pushed, self._pushed_at = rate, now
        expect = None if cut else self.version
        adaptive = {**gate._shared_limits(), "quiet": max(0.0, self.probe_after - now)}
        self._spawn(self.state.set_rate(self.account, rate, adaptive=adaptive, expect=expect))

    async def _push_later(self, gate: AccountGate, delay: float) -> None:
        await anyio.sleep(delay)
        self._later = False
        self.pushed(gate, cut=False)

    def _spawn(self, call: Awaitable[Any], *, wait: bool = True) -> None:
        """Run ``call`` in the background; :meth:`aclose` waits for it (``wait``) or cancels
        it (a storm's refinement, which sleeps through the cooldown)."""

        async def run() -> None:
            try:
                await call
            except Exception as exc:  # the next booking raises too: nothing is sent
                self.error = exc
                log.warning("the account's shared rate state was not updated: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        tasks = self._tasks if wait else self._refining
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def aclose(self) -> None:
        """Wait for the pushes still running (a storm's refinement is cancelled)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._refining:
            task.cancel()
        if self._refining:
            await asyncio.gather(*self._refining, return_exceptions=True)
