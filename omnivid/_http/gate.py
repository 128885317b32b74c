"""One gate per provider account, shared by every request to it (submits and polls alike).

The gate does two things:

* **Cooldown**: a 429 closes the gate until the server's ``Retry-After`` (capped) has passed,
  or, without one, for a jittered back-off ``uniform(base, 2 * base) * 2 ** k`` where ``k``
  counts the 429 *storms* in a row (``base = cooldown_base * time_scale``, capped at
  ``cooldown_cap * time_scale``). Nobody sends to that account until it reopens: waiters that
  were queued for a rate slot re-check the gate after their slot and re-book from the reopen.
* **Rate**: an optional requests-per-second limit (a token bucket with burst 1: slots
  ``1 / rate`` apart). It can be set at runtime (``gate.rate = 5``) and, with
  ``adaptive=True``, it adapts to the server's limit.

A *storm* is a burst of 429s answering requests sent before the gate reacted; only its first
429 may move the rate or lengthen the back-off. Each request's send time and number are kept
in a context variable set by :meth:`AccountGate.acquire` (one asyncio task sends one request
at a time), so :meth:`AccountGate.on_rate_limited` knows whether its request left before the
last storm and how many requests had left since the gate last reopened. Rates and windows are
in real seconds: server limits are wall-clock limits.

**The estimate.** At a storm, with S successes since the previous storm (policy "recover":
of requests sent since then), T seconds ago, of which C seconds the gate was closed::

    T' = T - C + min(C, burst)
    E  = S / T'             if there was a previous storm, T' >= estimate_window and S >= 5
    E1 = S / (T + burst)    at the first storm, T seconds after the first request, S >= 5

A storm of the server's limit means its bucket ran dry, so what it accepted since the previous
storm is its sustained rate. While the gate was closed the bucket refilled, but only up to its
size: closed time counts up to ``burst`` seconds (the bucket a server typically keeps: one
second of its rate). The first storm has no reference (a full bucket inflates what came before
it): ``E1`` assumes that bucket. A storm that is not the limit's (random 429s) reads low.

**Policy "recover"** (the default) keeps ``L``, the server's limit as far as it is known
(``known_limit``); ``settle * L`` is the last rate that worked, where every cut lands.
Until a limit is known (discovery), every storm cuts::

    the first storm, E1 known:  L = E1 (provisional),  r' = settle * E1
    E known:   L = E,  r' = settle * E; L is provisional unless E and E1 agree within a
               factor `spread`
    otherwise: r' = decrease * base,  slope = max(increase, (base - r') / recovery)
               base = r if the limit binds (and no slow start), else min(r, observed)

Once ``L`` is known, a storm is one of::

    burst      its request was among the first n <= max(1, 0.5 * L * min(P, burst)) sent
               after the gate reopened from a pause of P seconds (a server near L refilled
               about L * min(P, burst) requests meanwhile: its bucket is not dry after n)
    estimate   L provisional, not a burst, E >= at_limit * L: L = max(L, E), r' = settle * L;
               L is confirmed when E and the previous L agree within a factor `spread`
    failed     s > L (s: requests sent in the last second: more than the known limit):
    probe          E >= at_limit * L (the server let through about L):
                       L = max(L, min(E, s)), provisional again if E > spread * L
                   otherwise L stays (confirmed if there was no E);   r' = settle * L
    noise      anything else (a 429 within the known limit): ignored
    dropped    bursts and noise that keep coming: the last `confirm` of them each gave an
               estimate, all below at_limit * L and within a factor `spread` of each other
               (L = the lowest, confirmed); or they followed each other for `patience`
               seconds, each within `calm` seconds of sending after the previous cooldown
               (G = L, the last limit that worked; L = decrease * min(r, L), provisional);
               r' = settle * L

Only a failed probe or a drop cuts, so a storm of random 429s costs its cooldowns, not the
rate. Growth, per second of binding (dt between successes, at most 50 ms each)::

    slow start   (no rate given): r = start_rate, then r = r * 2 ** (dt / D) until the first
                 storm, or until r >= ramp_to: the gate is then unlimited (None). D, the time
                 to double, is max(ramp, 2 * srtt) (srtt: the mean round trip, weight 1/8 to
                 each new one): a rate that doubles faster than answers come back would send
                 the whole window before the first 429 can stop it
    restore      L known, r < settle * L:  r = min(settle * L, r * 2 ** (dt / restore))
    probe        L provisional: r = r * 2 ** (dt / restore) (find the limit), up to
                 settle * G if there is a G (restored: L = G, confirmed); otherwise, after
                 `calm` seconds of sending since the last storm: r = r + probe * L * dt
    always       min_rate <= r <= max_rate

A first estimate may come from random 429s (it then reads low), so it is provisional: the rate
probes above it quickly until a failed probe shows the server's limit, then slowly (a probe
above a real limit costs a whole cooldown). A rate given to the gate (``AccountGate(rate=...)``)
is where it starts, not a known limit; :meth:`AccountGate.resume_from` starts from a rate
learnt before (``learned_rate``), which it trusts as ``settle * L`` (confirmed).

**Policy "aimd"** (the policy before "recover", kept for comparison: ``policy="aimd"``): no
slow start and no known limit: every storm cuts as in discovery, and each success, while the
limit binds, adds ``slope / r`` (``slope`` requests/s per second).

**Shared** (:meth:`AccountGate.share`, several workers on one account): slots are booked in a
shared state (``SharedGate``: the PostgreSQL journal's), so the rate holds for the whole
account; a 429 closes the account for every worker; what the gate saw is scaled to the account
before estimating, and its rate and known limit are pushed to the others
(:mod:`omnivid._http.shared_gate`).
"""

from __future__ import annotations

import contextvars
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio

from .._aio import clock as _clock
from .shared_gate import SharedGate, SharedPacing

__all__ = ["AccountGate", "RateLimitListener", "RatePolicy", "SharedGate"]

RateLimitListener = Callable[[float, "float | None"], None]
"""Called on every 429 with ``(pause, retry_after)``: the seconds the gate closed for and the
server's hint (None when it sent none)."""

RatePolicy = Literal["recover", "aimd"]
"""How an adaptive gate moves its rate (see the module's docstring)."""

# (gate, send time, send number) of the request the current task sent last
_sent_at: contextvars.ContextVar[tuple[AccountGate, float, int] | None] = contextvars.ContextVar(
    "omnivid_gate_sent_at", default=None
)
_WINDOW = 1.0  # seconds of sends kept to measure the observed rate
_BINDING = 1.0  # the limit "binds" if some request waited for its slot this recently
_STEP = 0.05  # at most this many seconds of growth per success
_REBOOK = 1.25  # waiters book their slots again once the rate has grown this much
_MIN_OKS = 5  # successes an estimate needs


class AccountGate:
    """Cooldown and rate limit for one provider account. Safe to share between tasks."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        adaptive: bool = True,
        policy: RatePolicy = "recover",
        increase: float = 0.5,
        decrease: float = 0.7,
        recovery: float = 10.0,
        settle: float = 0.97,
        probe: float = 0.005,
        estimate_window: float = 0.1,
        burst: float = 1.0,
        at_limit: float = 0.9,
        restore: float = 0.25,
        calm: float = 0.5,
        patience: float = 3.0,
        confirm: int = 4,
        spread: float = 1.1,
        start_rate: float | None = 50.0,
        ramp: float = 0.005,
        ramp_to: float = 1000.0,
        min_rate: float = 0.2,
        max_rate: float | None = None,
        cooldown_base: float = 1.0,
        cooldown_cap: float = 60.0,
        time_scale: float = 1.0,
    ) -> None:
        if policy not in ("recover", "aimd"):
            raise ValueError(f"policy={policy!r}: 'recover' or 'aimd'")
        if rate is not None and not rate > 0:
            raise ValueError(f"rate={rate!r}: must be a positive number of requests/s or None")
        self._rate = rate
        self.adaptive, self.policy = adaptive, policy
        self.increase, self.decrease, self.recovery = increase, decrease, recovery
        self.settle, self.probe, self.at_limit, self.spread = settle, probe, at_limit, spread
        self.estimate_window, self.burst = estimate_window, burst
        self.restore, self.calm, self.patience = restore, calm, patience
        self.ramp, self.ramp_to = ramp, ramp_to
        self.min_rate, self.max_rate = min_rate, max_rate
        self.cooldown_base, self.cooldown_cap = cooldown_base, cooldown_cap
        self.time_scale = time_scale
        self._slope = increase
        self._closed_until = 0.0
        self._closed_from = 0.0  # when the last closed span began
        self._next_slot = 0.0
        self._streak = 0
        self._last_cut = float("-inf")  # the last storm
        self._storm_at: float | None = None  # the last storm, for the estimate
        self._oks = 0  # successes since then
        self._closed_total = 0.0  # seconds the gate has been (or is booked to be) closed
        self._storm_closed = 0.0  # of which elapsed at the last storm
        self.limit_estimate: float | None = None  # E at the last storm that gave one
        self._last_wait = float("-inf")
        self._sends: deque[float] = deque()
        self._seq = 0  # requests sent so far
        self._first_send: float | None = None
        self._first_estimate: float | None = None  # E1
        self._reopen_seq = 0  # of which before the gate last closed
        self._grown_at: float | None = None  # the last success that moved the rate
        self._srtt: float | None = None  # the mean round trip (during the slow start)
        self._limit: float | None = None  # L (policy "recover")
        self._provisional = False  # L is a first estimate, not yet shown by a failed probe
        self._good: float | None = None  # (provisional L) the last L that worked: restore to it
        self._ignored: deque[float | None] = deque(maxlen=confirm)  # their estimates
        self._quiet_since: float | None = None  # ignored storms in a row since then
        self._ramping = rate is None and adaptive and policy == "recover" and bool(start_rate)
        if self._ramping:
            self._rate = start_rate
        self._listeners: list[RateLimitListener] = []
        self._rebook = anyio.Event()  # set (and replaced) when the slot bookings are void
        self._booked_rate = self._rate  # the rate the bookings were made at
        self.rate_limited = 0
        self.cuts = 0
        self.ignored = 0  # storms that did not cut (bursts, noise)
        self._shared: SharedPacing | None = None  # the account's state shared by workers
        self._scale = 1.0  # (shared) the account's sends per send of this gate, last storm

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
        self._ramping = False
        self._next_slot = min(self._next_slot, _clock.now()) if value else 0.0

    @property
    def closed_until(self) -> float:
        """``_clock.now()`` value until which no request may be sent."""
        return self._closed_until

    @property
    def known_limit(self) -> float | None:
        """The server's limit as the gate knows it (``L``, policy "recover"); None before."""
        return self._limit

    @property
    def provisional(self) -> bool:
        """True while ``known_limit`` is a first estimate no failed probe has shown yet."""
        return self._provisional

    @property
    def ramping(self) -> bool:
        """True during the slow start (no rate known yet: the rate doubles while it binds)."""
        return self._ramping

    @property
    def learned_rate(self) -> float | None:
        """The rate a later run on this account should start from (see :meth:`resume_from`):
        ``settle * L`` once the limit is known, else the rate the gate settled on after its
        429s; None while it has cut nothing (no limit found)."""
        if self._limit is not None:
            return self.settle * self._limit
        return self._rate if self.cuts else None

    def resume_from(self, rate: float) -> bool:
        """Start from a rate learnt on an earlier run on this account (``learned_rate``).

        The gate paces at ``rate`` (within ``min_rate`` and ``max_rate``) without a slow
        start, and trusts it as the last rate that worked (``L = rate / settle``). Returns
        False, changing nothing, once the gate has a rate of its own (given, or found).
        """
        if not rate > 0:
            raise ValueError(f"rate={rate!r}: must be a positive number of requests/s")
        if self.cuts or self._limit is not None or (self._rate is not None and not self._ramping):
            return False
        self._rate = self._bounded(rate)
        self._ramping = False
        if self.policy == "recover":
            self._cut_to(self._rate / self.settle, provisional=False)
            self.cuts = 0
        return True

    @property
    def shared(self) -> SharedPacing | None:
        """The link to the account's state shared by workers (:meth:`share`), if any."""
        return self._shared

    def share(self, state: SharedGate, account: str) -> Callable[[], None]:
        """Share this account's rate limit with every worker using ``state`` (``account``:
        its name there, never its key); returns the call that stops sharing. From now on
        every request books its slot in ``state`` (see the module docstring)."""
        pacing = SharedPacing(state, account)
        self._shared = pacing

        def unshare() -> None:
            if self._shared is pacing:
                self._shared = None

        return unshare

    def _adopt(self, rate: float | None, state: Mapping[str, Any]) -> None:
        """Another worker's rate and known limit (a shared gate)."""
        if not self.adaptive or not state:  # (no worker pushed any: the rate is a seed)
            return
        limit = state.get("limit")
        if isinstance(limit, int | float) and limit > 0:
            self._limit = float(limit)
            self._provisional = bool(state.get("provisional", True))
            self._slope = self.probe * self._limit
        self._ramping = bool(state.get("ramping", False)) and self._ramping
        self._rate = self._bounded(rate) if rate is not None else None

    def _shared_limits(self) -> dict[str, Any]:
        """What the other workers adopt with the rate (a shared gate)."""
        return {"limit": self._limit, "provisional": self._provisional, "ramping": self._ramping}

    def observed_rate(self, now: float | None = None) -> float:
        """Requests sent per second over the last second."""
        now = _clock.now() if now is None else now
        self._trim(now)
        if not self._sends:
            return 0.0
        span = min(_WINDOW, max(now - self._sends[0], 1e-3))
        scale = self._scale if self._shared is not None else 1.0  # the account's
        return scale * len(self._sends) / span

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
        if self._shared is not None:  # slots are booked in the shared state: acquire()
            return False
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
        if self._shared is not None:
            if (wait := self._closed_until - _clock.now()) > 0:  # this worker's 429
                await anyio.sleep(wait)
            await self._shared.acquire(self)
            self._record_send(_clock.now())
            return
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
        if self._first_send is None:
            self._first_send = now
        self._seq += 1
        _sent_at.set((self, now, self._seq))
        self._sends.append(now)
        if len(self._sends) > 64:
            self._trim(now)

    def on_rate_limited(self, retry_after: float | None, *, cap: float = 120.0) -> float:
        """Record a 429: close the gate and (adaptive, once per storm) adapt the rate.

        Returns the pause in seconds.
        """
        now = _clock.now()
        self.rate_limited += 1
        sent = _sent_at.get()
        mine = sent is not None and sent[0] is self
        new_storm = not mine or sent is None or sent[1] >= self._last_cut
        if new_storm:
            self._streak += 1
            if self.adaptive and self._shared is None:  # (shared: the account's storm)
                self._storm(now, sent[2] if mine and sent is not None else None)
            self._last_cut = now
        if retry_after is not None:
            pause = min(retry_after, cap)
        else:
            k = min(max(self._streak - 1, 0), 6)
            base = self.cooldown_base * self.time_scale
            pause = min(random.uniform(base, 2 * base) * 2**k, self.cooldown_cap * self.time_scale)
        if now + pause > self._closed_until:
            if now >= self._closed_until:  # the gate was open: a new closed span
                self._closed_from = now
                self._reopen_seq = self._seq
            self._closed_total += now + pause - max(now, self._closed_until)
            self._closed_until = now + pause
            # every queued waiter re-books from the reopening at the (cut) rate; a booking kept
            # from before would run beside the new ones and exceed the rate
            self._rebook_from(self._closed_until)
        if self._shared is not None:  # the account's storm adapts the rate (SharedPacing)
            self._shared.closed(self, pause, now - sent[1] if mine and sent is not None else None)
        for listener in tuple(self._listeners):
            listener(pause, retry_after)
        return pause

    def on_success(self) -> None:
        """Record a request that was not rate limited (the rate grows while it binds)."""
        sent = _sent_at.get()
        if sent is None or sent[0] is not self or sent[1] >= self._last_cut:
            self._streak = 0
            self._oks += 1
            if self._shared is not None:
                self._shared.succeeded()
        elif self.policy == "aimd":
            self._oks += 1  # (it counted the successes of requests sent before the storm too)
        rate = self._rate
        if not self.adaptive or not rate:
            return
        now = _clock.now()
        binding = now - self._last_wait < _BINDING
        if self.policy == "aimd":
            if binding:
                rate += self._slope / max(rate, 1.0)
                self._rate = min(rate, self.max_rate) if self.max_rate else rate
            return
        if self._ramping and sent is not None and sent[0] is self:
            rtt, srtt = now - sent[1], self._srtt
            self._srtt = rtt if srtt is None else srtt + (rtt - srtt) / 8
        last, self._grown_at = self._grown_at, now
        if binding and last is not None:
            self._grow(now, rate, min(now - last, _STEP))
            if self._shared is not None:
                self._shared.pushed(self, cut=False)
            booked, rate = self._booked_rate, self._rate
            if booked and rate and rate > _REBOOK * booked and now >= self._closed_until:
                # slots booked at a much lower rate would hold the climb back
                self._rebook_from(min(self._next_slot, now + 1.0 / rate))

    # -- machinery ---------------------------------------------------------------------------
    def _grow(self, now: float, rate: float, dt: float) -> None:
        """Policy "recover": slow start, restore to the last rate that worked, or probe."""
        if self._shared is not None:  # every worker grows the shared rate: each its share
            dt /= max(1.0, self._scale)
        limit = self._limit
        if self._ramping:
            rate *= 2.0 ** (dt / max(self.ramp, 2.0 * (self._srtt or 0.0)))
            if rate >= self.ramp_to:
                self._rate, self._ramping = None, False
                return
        elif limit is not None and rate < self.settle * limit:
            rate = min(self.settle * limit, rate * 2.0 ** (dt / self.restore))
        elif self._provisional:  # find the limit (or restore the last good one)
            rate *= 2.0 ** (dt / self.restore)
            if self._good is not None and rate >= self.settle * self._good:
                rate, self._limit, self._provisional = self.settle * self._good, self._good, False
                self._good = None
        elif now - max(self._last_cut, self._closed_until) < self.calm:
            return  # no slow probe right after a storm
        elif self._shared is not None and now < self._shared.probe_after:
            return
        else:
            rate += self._slope * dt
        self._rate = min(rate, self.max_rate) if self.max_rate else rate

    def _measure(self, now: float) -> float | None:
        """The estimate E since the previous storm (None: too little to go on); the next
        measurement starts here."""
        # seconds closed so far (a cooldown still running counts only up to now)
        closed_now = self._closed_total - max(0.0, self._closed_until - now)
        closed = closed_now - self._storm_closed
        first = self._storm_at is None
        span = now - self._storm_at if self._storm_at is not None else 0.0
        span -= max(0.0, closed - self.burst)  # a pause counts only while the bucket refills
        oks, self._oks, self._storm_at, self._storm_closed = self._oks, 0, now, closed_now
        if first and self._first_send is not None and oks >= _MIN_OKS:
            self._first_estimate = oks / (now - self._first_send + self.burst)
        if span >= self.estimate_window and oks >= _MIN_OKS:
            self.limit_estimate = oks / span
            return self.limit_estimate
        return None

    def _storm(self, now: float, seq: int | None) -> None:
        """The first 429 of a storm: cut, or (policy "recover", limit known) maybe not."""
        estimate = self._measure(now)
        limit, rate = self._limit, self._rate
        if self.policy == "aimd" or limit is None:
            self._discover(now, estimate)
            return
        reopened = self._closed_until - self._closed_from  # the pause before this sending
        refilled = 0.5 * limit * min(reopened, self.burst)
        # (shared: this worker's sends since the reopening, scaled to the account's)
        burst = seq is not None and (seq - self._reopen_seq) * self._scale <= max(1.0, refilled)
        sent = 0.0 if burst else self.observed_rate(now)
        if not burst and self._provisional and estimate and estimate >= self.at_limit * limit:
            # the server let through about L or more: confirmed if about L
            self._cut_to(max(limit, estimate), provisional=not self._agree(estimate, limit))
            return
        if sent > limit:  # a failed probe: the server let through less than was sent
            if estimate is not None and estimate >= self.at_limit * limit:
                higher = estimate > self.spread * limit
                self._cut_to(max(limit, min(estimate, sent)), provisional=higher)
            else:  # back under L; stopped too soon for an estimate: L holds
                self._cut_to(limit, provisional=self._provisional and estimate is not None)
            return
        self.ignored += 1
        if self._quiet_since is None or now - self._closed_until >= self.calm:
            self._quiet_since = now  # a new run of ignored storms
        ignored = self._ignored
        ignored.append(estimate)
        known = [e for e in ignored if e is not None]
        consistent = (
            len(known) == ignored.maxlen
            and max(known) < self.at_limit * limit
            and max(known) <= self.spread * min(known)
        )
        if consistent:
            self._cut_to(min(known), provisional=False)
        elif now - self._quiet_since >= self.patience:  # the last limit that worked: good
            good = self._good if self._provisional else limit
            self._cut_to(self.decrease * min(rate or limit, limit), provisional=True, good=good)

    def _cut_to(self, limit: float, *, provisional: bool, good: float | None = None) -> None:
        """Policy "recover": the limit is ``limit``; settle under it."""
        if self._shared is not None:  # no doubling probes: every worker would compound them
            provisional = False
        self._limit, self._provisional, self._good = limit, provisional, good
        self._rate = self._bounded(self.settle * limit)
        self._slope = self.probe * limit
        self._ignored.clear()
        self._quiet_since = None
        self._grown_at = None
        self.cuts += 1

    def _discover(self, now: float, estimate: float | None) -> None:
        """A cut while the limit is unknown (and every cut of policy "aimd")."""
        rate = self._rate
        ramping, self._ramping = self._ramping, False
        first = self._first_estimate
        if self.policy == "recover" and estimate is None and not self.cuts and first is not None:
            self._cut_to(first, provisional=True)  # the first storm
            return
        if estimate is not None:
            if self.policy == "recover":
                agree = first is not None and self._agree(estimate, first)
                self._cut_to(estimate, provisional=not agree)
                return
            new = max(self.min_rate, self.settle * estimate)
            self._slope = max(self.increase, self.probe * estimate)
        else:
            binding = rate is not None and not ramping and now - self._last_wait < _BINDING
            if binding:
                base = rate
            else:  # the limit (if any) does not bind: cut from what was really sent
                observed = self.observed_rate(now) if len(self._sends) >= 4 else None
                candidates = [r for r in (rate, observed) if r]
                if not candidates:
                    return
                base = min(candidates)
            assert base is not None
            new = max(self.min_rate, base * self.decrease)
            self._slope = max(self.increase, (base - new) / self.recovery)
        self._rate = new
        self._grown_at = None
        self.cuts += 1

    def _agree(self, a: float, b: float) -> bool:
        return max(a, b) <= self.spread * min(a, b)

    def _rebook_from(self, slot: float) -> None:
        """Void every booked slot: the waiters book again, from ``slot`` on."""
        self._next_slot = slot
        self._booked_rate = self._rate
        self._rebook.set()
        self._rebook = anyio.Event()

    def _bounded(self, rate: float) -> float:
        rate = max(self.min_rate, rate)
        return min(rate, self.max_rate) if self.max_rate else rate

    def _trim(self, now: float) -> None:
        sends = self._sends
        while sends and now - sends[0] > _WINDOW:
            sends.popleft()
