"""RetryPolicy's wait schedule and parse_retry_after (pure functions, no network)."""

from __future__ import annotations

import email.utils
import random

import pytest

import omnivid
from omnivid import errors
from omnivid._http.retry import parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("0.05", 0.05),
        ("120", 120.0),
        ("-3", 0.0),
    ],
)
def test_retry_after_seconds(header: str, expected: float) -> None:
    """A delay-seconds Retry-After is read as seconds (negative clamps to 0)."""
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_http_date_in_future() -> None:
    """An HTTP-date Retry-After is the seconds from now until then."""
    header = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(header, now=NOW) == pytest.approx(30.0)


def test_retry_after_http_date_in_past_is_zero() -> None:
    """An HTTP-date already past means retry now."""
    header = email.utils.formatdate(NOW - 600, usegmt=True)
    assert parse_retry_after(header, now=NOW) == 0.0


def test_retry_after_http_date_without_zone_is_utc() -> None:
    """An HTTP-date without a zone (obsolete form) is read as UTC."""
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:20 -0000", now=NOW) == pytest.approx(0.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20", now=NOW) == pytest.approx(60.0)


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "1e999", "Mon, 99 Foo"])
def test_retry_after_garbage_is_none(header: str | None) -> None:
    """A missing or unreadable Retry-After gives None (fall back to back-off)."""
    assert parse_retry_after(header, now=NOW) is None


def test_defaults_are_documented_values() -> None:
    """RetryPolicy() is 4 retries, 0.5 s base, 30 s max, Retry-After capped at 120 s."""
    policy = omnivid.RetryPolicy()
    assert (policy.max_retries, policy.base_delay, policy.max_delay) == (4, 0.5, 30.0)
    assert (policy.retry_after_cap, policy.resubmit_ambiguous) == (120.0, False)


def test_negative_max_retries_is_refused() -> None:
    """max_retries below zero is a clear ValueError."""
    with pytest.raises(ValueError, match="max_retries=-1"):
        omnivid.RetryPolicy(max_retries=-1)


@pytest.mark.parametrize("seed", range(20))
def test_hint_wait_never_shortens_retry_after(seed: int) -> None:
    """Jitter only lengthens a server hint, by at most hint_jitter."""
    policy = omnivid.RetryPolicy()
    wait = policy.hint_wait(3.0, random.Random(seed))
    assert 3.0 <= wait <= 3.0 * (1 + policy.hint_jitter)


def test_hint_wait_is_capped() -> None:
    """A huge Retry-After is capped at retry_after_cap (plus jitter)."""
    policy = omnivid.RetryPolicy(retry_after_cap=10.0)
    wait = policy.hint_wait(86_400.0, random.Random(1))
    assert 10.0 <= wait <= 11.0


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_wait_is_full_jitter_within_the_cap(attempt: int) -> None:
    """Without a hint, wait = uniform(0, min(max_delay, base * 2**attempt))."""
    policy = omnivid.RetryPolicy(base_delay=0.5, max_delay=4.0)
    bound = min(4.0, 0.5 * 2**attempt)
    waits = [policy.backoff_wait(attempt, random.Random(s)) for s in range(50)]
    assert all(0.0 <= w <= bound for w in waits)
    assert max(waits) > bound / 2  # jittered across the range, not a constant


def test_wait_generator_uses_the_hint_of_a_rate_limit() -> None:
    """The backoff wait generator sent a RateLimitError with retry_after waits at least that."""
    policy = omnivid.RetryPolicy(base_delay=0.001, max_delay=0.001)
    gen = policy.waits()
    gen.send(None)
    limited = errors.RateLimitError("slow down", status=429, retry_after=2.0)
    assert gen.send(limited) >= 2.0
    assert gen.send(errors.ServerError("boom", status=500)) <= 0.002
    assert gen.send(errors.RateLimitError("no hint", status=429)) <= 0.004
