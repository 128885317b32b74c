"""AccountGate: shared 429 cooldown and adaptive (AIMD) rate limit, on a controlled clock."""

from __future__ import annotations

import random

import anyio
import pytest
from wirehelp import Clock

from omnivid._http.gate import AccountGate


def test_retry_after_closes_the_gate(clock: Clock) -> None:
    """A 429 with Retry-After closes the gate for exactly that long (capped)."""
    gate = AccountGate()
    assert gate.on_rate_limited(2.5, cap=120.0) == 2.5 and gate.closed_until == 1002.5
    assert gate.on_rate_limited(500.0, cap=120.0) == 120.0 and gate.closed_until == 1120.0


def test_backoff_without_retry_after_is_jittered_and_grows_per_storm(clock: Clock) -> None:
    """Without Retry-After the pause is uniform(base, 2 base) x 2^k for the k-th storm."""
    random.seed(1)
    gate = AccountGate(adaptive=False, cooldown_base=1.0, time_scale=0.01)
    first = gate.on_rate_limited(None)
    clock.now += 1.0
    second = gate.on_rate_limited(None)
    assert 0.01 <= first <= 0.02 and 0.02 <= second <= 0.04


def test_a_success_ends_the_streak(clock: Clock) -> None:
    """After a success, the next storm's back-off starts from the base again."""
    random.seed(2)
    gate = AccountGate(adaptive=False, cooldown_base=1.0, time_scale=0.01)
    for _ in range(3):
        gate.on_rate_limited(None)
        clock.now += 1.0
    gate.on_success()
    assert gate.on_rate_limited(None) <= 0.02


def test_first_storm_cuts_from_the_observed_rate(clock: Clock) -> None:
    """With no rate yet (no slow start), the first storm sets it to decrease x the observed
    send rate."""

    async def send(n: int) -> None:
        for _ in range(n):
            await gate.acquire()
            clock.now += 0.01  # 100 requests/s

    gate = AccountGate(decrease=0.5, start_rate=None)
    anyio.run(send, 50)
    gate.on_rate_limited(None)
    assert gate.rate == pytest.approx(50.0, rel=0.05)


def test_later_storm_settles_under_the_estimated_limit(clock: Clock) -> None:
    """Successes between two storms estimate the server's rate; the gate settles under it."""
    gate = AccountGate(rate=500.0, settle=0.9)
    gate.on_rate_limited(1.0)  # the first storm: no estimate yet
    for _ in range(200):  # 200 accepted in the next 2 s (pause included)
        clock.now += 0.01
        gate.on_success()
    gate.on_rate_limited(1.0)
    assert gate.limit_estimate == pytest.approx(100.0)
    assert gate.rate == pytest.approx(90.0)


def test_one_cut_per_storm(clock: Clock) -> None:
    """429s answering requests sent before the cut do not cut the rate again."""
    gate = AccountGate(decrease=0.5, start_rate=None)

    async def storm() -> None:
        answered = anyio.Event()

        async def request() -> None:
            await gate.acquire()  # all five leave at t=1000
            await answered.wait()
            gate.on_rate_limited(0.0)  # and all five come back 429 at t=1001

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(request)
            await anyio.sleep(0.01)
            clock.now += 1.0
            answered.set()

    anyio.run(storm)
    assert gate.cuts == 1 and gate.rate_limited == 5


def test_rate_rises_only_while_it_binds(clock: Clock) -> None:
    """Policy aimd: successes raise the rate only if some request recently waited for its
    slot, by slope / rate each."""
    gate = AccountGate(rate=10.0, increase=1.0, policy="aimd")
    for _ in range(50):
        gate.on_success()
    assert gate.rate == 10.0
    gate._last_wait = clock.now  # a request just waited for a slot
    for _ in range(10):
        gate.on_success()
    assert gate.rate is not None and 10.0 < gate.rate <= 11.0


def test_rate_never_below_min_rate(clock: Clock) -> None:
    """Repeated storms stop at min_rate."""
    gate = AccountGate(rate=1.0, decrease=0.1, min_rate=0.5)
    for _ in range(5):
        clock.now += 10.0
        gate._last_wait = clock.now
        gate.on_rate_limited(0.0)
    assert gate.rate == 0.5


def test_rate_can_be_set_at_runtime(clock: Clock) -> None:
    """gate.rate is adjustable; a non-positive value is refused."""
    gate = AccountGate()
    gate.rate = 5.0
    assert gate.rate == 5.0
    with pytest.raises(ValueError, match="rate"):
        gate.rate = 0


def test_listeners_hear_every_429(clock: Clock) -> None:
    """subscribe() gets (pause, retry_after) per 429 until unsubscribed."""
    gate = AccountGate()
    heard: list[tuple[float, float | None]] = []
    unsubscribe = gate.subscribe(lambda pause, hint: heard.append((pause, hint)))
    gate.on_rate_limited(0.5)
    unsubscribe()
    gate.on_rate_limited(0.5)
    assert heard == [(0.5, 0.5)]


@pytest.mark.anyio
async def test_no_request_leaves_while_closed() -> None:
    """acquire() waits out a cooldown started while a request was queued for its slot."""
    gate = AccountGate(rate=20.0, adaptive=False)
    released: list[float] = []

    async def request() -> None:
        await gate.acquire()
        released.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        await gate.acquire()  # takes the first slot; the next ones are 50 ms apart
        tg.start_soon(request)
        await anyio.sleep(0.01)
        closed_at = anyio.current_time()
        gate.on_rate_limited(0.1)
    assert released and released[0] >= closed_at + 0.1


@pytest.mark.anyio
async def test_rate_spaces_requests() -> None:
    """With rate=50, five requests take at least 80 ms (slots 20 ms apart)."""
    gate = AccountGate(rate=50.0, adaptive=False)
    start = anyio.current_time()
    for _ in range(5):
        await gate.acquire()
    assert anyio.current_time() - start >= 0.08 - 1e-3


@pytest.fixture
def anyio_backend() -> str:
    """asyncio, like the rest of omnivid's tests."""
    return "asyncio"


def test_acquire_nowait_takes_only_a_free_slot(clock: Clock) -> None:
    """At 10/s a slot is free at once, the next only 0.1 s later; a refusal takes nothing."""
    gate = AccountGate(rate=10.0, adaptive=False)
    assert gate.acquire_nowait() is True
    assert gate.acquire_nowait() is False
    clock.now += 0.06
    assert gate.acquire_nowait() is False
    clock.now += 0.06
    assert gate.acquire_nowait() is True


def test_acquire_nowait_refuses_while_the_gate_is_closed(clock: Clock) -> None:
    """During a Retry-After window nothing may be sent, without a rate limit too."""
    gate = AccountGate(adaptive=False)
    gate.on_rate_limited(1.0)
    assert gate.acquire_nowait() is False
    clock.now += 1.0
    assert gate.acquire_nowait() is True
