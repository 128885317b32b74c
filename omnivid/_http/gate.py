"""One gate per provider account, shared by every request to it (submits and polls alike).

The gate does two things:

* **Cooldown**: a 429 closes the gate until the server's ``Retry-After`` (capped) has passed,
  or, without one, for a jittered back-off ``uniform(base, 2 * base) * 2 ** k`` where ``k``
  counts the 429 *storms* in a row (``base = cooldown_base * time_scale``, capped at
  ``cooldown_cap * time_scale``). Nobody sends to that account until it reopens: waiters that
  were queued for a rate slot re-check the gate after their slot and re-book from the reopen.
* **Rate**: an optional requests-per-second limit (a token bucket with burst 1: slots
  ``1 / rate`` apart). It can be set at runtime (``gate.rate = 5``) and, with
  ``adaptive=True``, it adapts (additive increase, multiplicative decrease)::

      on a 429 storm, with S successes since the previous storm, T seconds ago, of which
      C seconds the gate was closed (cooldowns):
        a previous storm, T' = T - C + min(C, burst) >= estimate_window and S >= 10:
                        limit = S / T'                (the server's rate: it let S through in
                                                       T' seconds)
                        rate' = settle * limit,       slope = max(increase, probe * limit)
        otherwise:      rate' = decrease * base       (multiplicative decrease)
                        base  = rate if the limit binds, else min(rate, observed)
                                (observed: requests sent in the last second)
                        slope = max(increase, (base - rate') / recovery)
        always:         rate' >= min_rate
      per success:      rate += slope / rate          (= +slope requests/s per second at rate)
                        (only while the limit binds: a request waited for its slot < 1 s ago)

  A storm means the server's bucket ran dry, so what it accepted since the previous storm is
  its sustained rate (the first storm has no such reference: a full bucket inflates what came
  before it). While the gate was closed the server's bucket refilled, but only up to its size:
  counting a long cooldown whole would take the client's own pause for a slow server (a 2 s
  pause before 0.2 s of sending, at R = 100/s with a bucket of 100, reads as 55/s), so closed
  time counts only up to ``burst`` seconds (the bucket a server typically keeps: one second
  of its rate). The client settles just under the estimate and then probes upwards slowly
  (a probe above the limit costs a whole ``Retry-After`` pause), while without an estimate
  it climbs back to the last level in about ``recovery`` seconds. If the client sent less
  than the server allows, the estimate is low: the rate is then not binding, and climbs while
  it binds.

A *storm* is a burst of 429s answering requests sent before the gate reacted; only the first
429 of a storm cuts the rate or lengthens the back-off. Each request's send time is kept in a
context variable set by :meth:`AccountGate.acquire` (one asyncio task sends one request at a
time), so :meth:`AccountGate.on_rate_limited` knows whether its request left before the last
cut. Rates and the observation window are in real seconds: server limits are wall-clock limits.
"""

from __future__ import annotations

import contextvars
import random
from collections import deque
from collections.abc import Callable

import anyio

from .._aio import clock as _clock

__all__ = ["AccountGate", "RateLimitListener"]

RateLimitListener = Callable[[float, "float | None"], None]
"""Called on every 429 with ``(pause, retry_after)``: the seconds the gate closed for and the
server's hint (None when it sent none)."""

_sent_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "omnivid_gate_sent_at", default=None
)
_WINDOW = 1.0  # seconds of sends kept to measure the observed rate
_BINDING = 1.0  # the limit "binds" if some request waited for its slot this recently


class AccountGate:
    """Cooldown and rate limit for one provider account. Safe to share between tasks."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        adaptive: bool = True,
        increase: float = 0.5,
        decrease: float = 0.7,
        recovery: float = 10.0,
        settle: float = 0.97,
        probe: float = 0.005,
        estimate_window: float = 0.1,
        burst: float = 1.0,
        min_rate: float = 0.2,
        max_rate: float | None = None,
        cooldown_base: float = 1.0,
        cooldown_cap: float = 60.0,
        time_scale: float = 1.0,
    ) -> None:
        self._rate = rate
        self.adaptive = adaptive
        self.increase = increase
        self.decrease = decrease
        self.recovery = recovery
        self.settle = settle
        self.probe = probe
        self.estimate_window = estimate_window
        self.burst = burst
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.cooldown_base = cooldown_base
        self.cooldown_cap = cooldown_cap
        self.time_scale = time_scale
        self._slope = increase
        self._closed_until = 0.0
        self._next_slot = 0.0
        self._streak = 0
        self._last_cut = float("-inf")
        self._storm_at: float | None = None  # the last storm
        self._oks = 0  # successes since then
        self._closed_total = 0.0  # seconds the gate has been (or is booked to be) closed
        self._storm_closed = 0.0  # of which elapsed at the last storm
        self.limit_estimate: float | None = None
        self._last_wait = float("-inf")
        self._sends: deque[float] = deque()
        self._listeners: list[RateLimitListener] = []
        self._rebook = anyio.Event()  # set (and replaced) when a 429 voids the slot bookings
        self.rate_limited = 0
        self.cuts = 0

    def __repr__(self) -> str:
        rate = f"{self._rate:.2f}/s" if self._rate else "unlimited"
        return f"<AccountGate rate={rate} rate_limited={self.rate_limited}>"

    # -- settings ----------------------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        """Requests per second allowed now (None: no limit until the first 429)."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        if value is not None and not value > 0:
            raise ValueError(f"rate={value!r}: must be a positive number of requests/s or None")
        self._rate = value
        self._next_slot = min(self._next_slot, _clock.now()) if value else 0.0

    @property
    def closed_until(self) -> float:
        """``_clock.now()`` value until which no request may be sent."""
        return self._closed_until

    def observed_rate(self, now: float | None = None) -> float:
        """Requests sent per second over the last second."""
        now = _clock.now() if now is None else now
        self._trim(now)
        if not self._sends:
            return 0.0
        span = min(_WINDOW, max(now - self._sends[0], 1e-3))
        return len(self._sends) / span

    def subscribe(self, listener: RateLimitListener) -> Callable[[], None]:
        """Call ``listener(pause, retry_after)`` on every 429; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # -- the gate ----------------------------------------------------------------------------
    def acquire_nowait(self) -> bool:
        """Take a send slot if one is free now (no cooldown, no rate wait): True when taken;
        False, taking nothing, when :meth:`acquire` would wait."""
        now = _clock.now()
        if now < self._closed_until:
            return False
        rate = self._rate
        if rate:
            if self._next_slot > now:
                return False
            self._next_slot = now + 1.0 / rate
        self._record_send(now)
        return True

    async def acquire(self) -> None:
        """Wait until a request may be sent: after any cooldown and the next rate slot."""
        while True:
            now = _clock.now()
            if now < self._closed_until:
                await anyio.sleep(self._closed_until - now)
                continue
            rate = self._rate
            if rate:
                slot = max(now, self._next_slot)
                self._next_slot = slot + 1.0 / rate
                if slot > now:
                    self._last_wait = now
                    rebook = self._rebook
                    with anyio.move_on_after(slot - now):
                        await rebook.wait()
                    if rebook.is_set() or _clock.now() < self._closed_until:
                        continue  # a 429 voided the booking (made at the old rate): re-book
                    now = _clock.now()
            self._record_send(now)
            return

    def _record_send(self, now: float) -> None:
        _sent_at.set(now)
        self._sends.append(now)
        if len(self._sends) > 64:
            self._trim(now)

    def on_rate_limited(self, retry_after: float | None, *, cap: float = 120.0) -> float:
        """Record a 429: close the gate and (adaptive, once per storm) cut the rate.

        Returns the pause in seconds.
        """
        now = _clock.now()
        self.rate_limited += 1
        sent = _sent_at.get()
        new_storm = sent is None or sent >= self._last_cut
        if new_storm:
            self._streak += 1
        if retry_after is not None:
            pause = min(retry_after, cap)
        else:
            k = min(max(self._streak - 1, 0), 6)
            base = self.cooldown_base * self.time_scale
            pause = min(random.uniform(base, 2 * base) * 2**k, self.cooldown_cap * self.time_scale)
        if now + pause > self._closed_until:
            self._closed_total += now + pause - max(now, self._closed_until)
            self._closed_until = now + pause
            # every queued waiter re-books from the reopening at the (cut) rate; a booking kept
            # from before would run beside the new ones and exceed the rate
            self._next_slot = self._closed_until
            self._rebook.set()
            self._rebook = anyio.Event()
        if new_storm:
            if self.adaptive:
                self._cut(now)
            self._last_cut = now
        for listener in tuple(self._listeners):
            listener(pause, retry_after)
        return pause

    def on_success(self) -> None:
        """Record a request that was not rate limited (additive increase while binding)."""
        sent = _sent_at.get()
        if sent is None or sent >= self._last_cut:
            self._streak = 0
        self._oks += 1
        rate = self._rate
        if self.adaptive and rate and _clock.now() - self._last_wait < _BINDING:
            rate += self._slope / max(rate, 1.0)
            self._rate = min(rate, self.max_rate) if self.max_rate else rate

    # -- machinery ---------------------------------------------------------------------------
    def _cut(self, now: float) -> None:
        # seconds closed so far (a cooldown still running counts only up to now)
        closed_now = self._closed_total - max(0.0, self._closed_until - now)
        closed = closed_now - self._storm_closed
        span = now - self._storm_at if self._storm_at is not None else 0.0
        span -= max(0.0, closed - self.burst)  # a pause counts only while the bucket refills
        oks, self._oks, self._storm_at, self._storm_closed = self._oks, 0, now, closed_now
        if span >= self.estimate_window and oks >= 10:
            limit = oks / span
            self.limit_estimate = limit
            self._rate = max(self.min_rate, self.settle * limit)
            self._slope = max(self.increase, self.probe * limit)
            self.cuts += 1
            return
        binding = self._rate is not None and now - self._last_wait < _BINDING
        if binding:
            base = self._rate
        else:  # the limit (if any) does not bind: cut from what was really sent
            observed = self.observed_rate(now) if len(self._sends) >= 4 else None
            candidates = [r for r in (self._rate, observed) if r]
            if not candidates:
                return
            base = min(candidates)
        assert base is not None
        new = max(self.min_rate, base * self.decrease)
        self._slope = max(self.increase, (base - new) / self.recovery)
        self._rate = new
        self.cuts += 1

    def _trim(self, now: float) -> None:
        sends = self._sends
        while sends and now - sends[0] > _WINDOW:
            sends.popleft()
