"""Retry policy and its wait schedule, for the ``backoff`` library.

Waits, for attempt ``n`` (0-based) after a failure::

    no hint:      wait = uniform(0, min(max_delay, base_delay * 2 ** n))        (full jitter)
    Retry-After:  wait = min(retry_after, retry_after_cap) * uniform(1, 1 + hint_jitter)
                  (the hint of a 429, or of a 5xx such as 503)

Jitter never shortens a server's ``Retry-After``: it only adds to it.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Generator
from datetime import UTC, datetime

from attrs import field, frozen

from ..errors import RateLimitError, ServerError

__all__ = ["RetryPolicy", "parse_retry_after", "retry_hint"]


@frozen(kw_only=True)
class RetryPolicy:
    """How omnivid retries HTTP requests.

    ``max_retries``: retries after the first try (0 disables them). Reads retry on connection
    errors, timeouts, 429 and 5xx. Submits retry only on 429 and on connection failures before
    the body was sent; any other failure raises ``SubmissionUnknownError`` unless
    ``resubmit_ambiguous`` is set (then it is retried, logged at WARNING, and may bill twice).
    ``retry_after_cap``: the longest server ``Retry-After`` omnivid will honour (seconds).
    """

    max_retries: int = field(default=4)
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 120.0
    hint_jitter: float = 0.1
    resubmit_ambiguous: bool = False

    @max_retries.validator
    def _check(self, _: object, value: int) -> None:
        if value < 0:
            raise ValueError(f"max_retries={value}: must be 0 or more")

    def hint_wait(self, retry_after: float, rng: random.Random | None = None) -> float:
        """The wait for a server hint: capped, then lengthened by up to ``hint_jitter``."""
        r = rng or random
        return min(retry_after, self.retry_after_cap) * (1.0 + r.uniform(0.0, self.hint_jitter))

    def backoff_wait(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential wait for ``attempt`` (0-based) when there is no hint."""
        r = rng or random
        return r.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))

    def waits(self) -> Generator[float, BaseException | None, None]:
        """A ``backoff`` wait generator: it is sent each failure and yields the next wait."""
        exc = yield 0.0
        attempt = 0
        while True:
            hint = retry_hint(exc)
            wait = self.backoff_wait(attempt) if hint is None else self.hint_wait(hint)
            attempt += 1
            exc = yield wait


def retry_hint(exc: BaseException | None) -> float | None:
    """The ``Retry-After`` seconds a 429 or 5xx answer carried, or None."""
    if isinstance(exc, RateLimitError | ServerError):
        return exc.retry_after
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header given as seconds or an HTTP-date; None if absent
    or unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
        seconds = (when - current).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN or inf
        return None
    return max(0.0, seconds)
