"""PollPolicy: first poll from the estimate with a floor, progress-aware, capped, jittered."""

from __future__ import annotations

import random

import pytest

import omnivid
from omnivid import PollPolicy, TaskStatus


class Edge(random.Random):
    """An rng whose ``uniform`` returns its low (``high=False``) or high bound."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


LOW, HIGH = Edge(False), Edge(True)


def task(estimate: float | None = None, progress: int = 0) -> omnivid.Task:
    """A processing task with the given estimate and progress."""
    return omnivid.Task(
        id="t",
        provider="apimart",
        status=TaskStatus.PROCESSING,
        estimated_seconds=estimate,
        progress=progress,
    )


def test_defaults_are_documented() -> None:
    """PollPolicy() waits at least 5 s before the first poll and at most 30 s between polls."""
    policy = PollPolicy()
    assert (policy.floor, policy.max_interval, policy.min_interval) == (5.0, 30.0, 1.0)
    assert (policy.first_fraction, policy.jitter, policy.time_scale) == (0.75, 0.05, 1.0)


def test_first_poll_from_estimated_time() -> None:
    """The first poll comes at first_fraction x estimated_time after the submit."""
    assert PollPolicy().next_delay(task(20), 0.0, first=True, rng=LOW) == pytest.approx(15.0)


def test_first_poll_counts_time_already_elapsed() -> None:
    """Time spent since the submit is subtracted from the first wait."""
    assert PollPolicy().next_delay(task(20), 6.0, first=True, rng=LOW) == pytest.approx(9.0)


def test_first_poll_has_a_floor() -> None:
    """A tiny estimate still waits the floor (providers advise 5 s) before the first poll."""
    assert PollPolicy().next_delay(task(2), 0.0, first=True, rng=LOW) == pytest.approx(5.0)


def test_first_poll_is_capped() -> None:
    """A long estimate (Omni-Flash-Ext's 600 s) is capped at max_interval."""
    assert PollPolicy().next_delay(task(600), 0.0, first=True, rng=LOW) == pytest.approx(30.0)


def test_default_estimate_when_the_server_gives_none() -> None:
    """Without estimated_time the model's typical time is used."""
    delay = PollPolicy().next_delay(task(None), 0.0, first=True, default_estimate=16, rng=LOW)
    assert delay == pytest.approx(12.0)


def test_progress_reestimates_the_end() -> None:
    """At 50% after 10 s, the next poll aims at 20 s (x (1 + margin))."""
    delay = PollPolicy().next_delay(task(600, progress=50), 10.0, first=False, rng=LOW)
    assert delay == pytest.approx(20.0 * 1.01 - 10.0)


def test_overdue_task_backs_off_geometrically() -> None:
    """Past its estimate, a task is polled every overdue_fraction x elapsed (floored)."""
    policy = PollPolicy()
    assert policy.next_delay(task(10), 100.0, first=False, rng=LOW) == pytest.approx(5.0)
    assert policy.next_delay(task(10), 12.0, first=False, rng=LOW) == pytest.approx(1.0)


def test_wait_never_below_min_interval() -> None:
    """A poll is never scheduled sooner than min_interval."""
    delay = PollPolicy().next_delay(task(10, progress=99), 9.9, first=False, rng=LOW)
    assert delay >= 1.0


@pytest.mark.parametrize("seed", range(30))
def test_jitter_only_lengthens_and_is_bounded(seed: int) -> None:
    """Jitter multiplies the wait by uniform(1, 1 + jitter): never negative, never shorter."""
    policy = PollPolicy()
    base = policy.next_delay(task(20), 0.0, first=True, rng=LOW)
    delay = policy.next_delay(task(20), 0.0, first=True, rng=random.Random(seed))
    assert 0 < base <= delay <= base * (1 + policy.jitter)


def test_jitter_upper_bound() -> None:
    """The largest jittered wait is exactly (1 + jitter) x the wait."""
    assert PollPolicy().next_delay(task(20), 0.0, first=True, rng=HIGH) == pytest.approx(15.75)


def test_scaled_policy_runs_faster() -> None:
    """scaled(0.001) gives the same schedule in real seconds 1000 times shorter."""
    fast = PollPolicy().scaled(0.001)
    assert fast.next_delay(task(20), 0.006, first=True, rng=LOW) == pytest.approx(0.009)


def test_client_scales_its_poll_policy() -> None:
    """AsyncClient(time_scale=...) scales the poll policy it is given."""
    client = omnivid.AsyncClient("apimart", api_key="k", time_scale=0.01)
    assert client.poll.time_scale == 0.01
