"""One gate per provider account, shared by every request to it (submits and polls alike).

The gate does two things:

* **Cooldown**: a 429 closes the gate for the server's ``Retry-After`` (or, without one, a
  jittered back-off ``uniform(base, 2 * base) * 2 ** k`` for the k-th 429 in a row, capped);
  nobody sends to that account until it reopens.
* **Rate**: an optional requests-per-second limit (token bucket, burst 1). It can be set at
  runtime (``rate``), and with ``adaptive=True`` it adapts: multiplied by ``decrease`` on a 429
  and raised by ``increase`` requests/s after each success (additive increase, multiplicative
  decrease), so with an unknown server limit the client settles just under it.
"""

from __future__ import annotations

import random

import anyio

__all__ = ["AccountGate"]


class AccountGate:
    """Cooldown and rate limit for one provider account. Safe to share between tasks."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        adaptive: bool = True,
        increase: float = 0.5,
        decrease: float = 0.7,
        min_rate: float = 0.2,
        cooldown_base: float = 1.0,
        cooldown_cap: float = 60.0,
        time_scale: float = 1.0,
    ) -> None:
        self.rate = rate
        self.adaptive = adaptive
        self.increase = increase
        self.decrease = decrease
        self.min_rate = min_rate
        self.cooldown_base = cooldown_base
        self.cooldown_cap = cooldown_cap
        self.time_scale = time_scale
        self._closed_until = 0.0
        self._next_slot = 0.0
        self._streak = 0
        self._sent_since_429 = 0
        self._last_429 = 0.0
        self.rate_limited = 0

    @property
    def closed_until(self) -> float:
        """``anyio.current_time()`` value until which no request may be sent."""
        return self._closed_until

    async def acquire(self) -> None:
        """Wait until a request may be sent: after any cooldown and the next rate slot."""
        while True:
            now = anyio.current_time()
            if now < self._closed_until:
                await anyio.sleep(self._closed_until - now)
                continue
            if self.rate:
                slot = max(now, self._next_slot)
                self._next_slot = slot + 1.0 / self.rate
                if slot > now:
                    await anyio.sleep(slot - now)
                    if anyio.current_time() < self._closed_until:
                        continue
            return

    def on_rate_limited(self, retry_after: float | None, *, cap: float = 120.0) -> float:
        """Record a 429: close the gate and (adaptive) cut the rate. Returns the pause."""
        now = anyio.current_time()
        self.rate_limited += 1
        if retry_after is not None:
            pause = min(retry_after, cap)
        else:
            k = min(self._streak, 6)
            base = self.cooldown_base * self.time_scale
            pause = min(random.uniform(base, 2 * base) * 2**k, self.cooldown_cap * self.time_scale)
        self._streak += 1
        self._closed_until = max(self._closed_until, now + pause)
        if self.adaptive:
            elapsed = max(now - self._last_429, 1e-6)
            observed = self._sent_since_429 / elapsed if self._last_429 else None
            current = self.rate or observed
            # one cut per storm, not one per request that was already queued
            if current and now - self._last_429 > pause:
                self.rate = max(self.min_rate, current * self.decrease)
        self._last_429 = now
        self._sent_since_429 = 0
        return pause

    def on_success(self) -> None:
        """Record a request that was not rate limited."""
        self._streak = 0
        self._sent_since_429 += 1
        if self.adaptive and self.rate:
            self.rate += self.increase / max(self.rate, 1.0)
