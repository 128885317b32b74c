"""A shared gate's policy at an account's storm (SharedPacing.on_storm), on a frozen clock and
an in-memory shared state: what the estimate E = S / T' makes of the rate."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from wirehelp import Clock

from omnivid._http.gate import AccountGate
from omnivid._http.shared_gate import SharedPacing

pytestmark = pytest.mark.anyio


@attrs.define
class Storm:
    """A storm as a shared state answers it."""

    oks: int
    span: float | None
    pause: float | None
    closed_for: float = 1.0
    new: bool = True
    at: object = None


@attrs.define
class Booking:
    """A slot as a shared state answers it (free now)."""

    rate: float | None
    adaptive: dict[str, Any]
    version: int = 1
    wait: float = 0.0
    closed: bool = False
    sent: int = 1
    oks: int = 0


class State:
    """The shared state, recording the rates pushed to it; bookings answer ``booking``."""

    def __init__(self) -> None:
        self.pushed: list[tuple[float | None, dict[str, Any] | None, int | None]] = []
        self.booking = Booking(rate=None, adaptive={})
        self.reports: list[tuple[str, int]] = []

    async def book(self, account: str, rate: float | None = None, oks: int = 0) -> Booking:
        self.reports.append(("book", oks))
        return self.booking

    async def report(self, account: str, oks: int) -> None:
        self.reports.append(("report", oks))

    async def set_rate(
        self,
        account: str,
        rate: float | None,
        *,
        adaptive: dict[str, Any] | None = None,
        expect: int | None = None,
    ) -> bool:
        self.pushed.append((rate, adaptive, expect))
        return True


@pytest.fixture
def shared(clock: Clock) -> tuple[AccountGate, SharedPacing, State]:
    """A gate sharing an in-memory state (its rate unknown, as when a run starts)."""
    gate = AccountGate()
    state = State()
    gate.share(state, "acct")  # type: ignore[arg-type]
    pacing = gate.shared
    assert pacing is not None
    return gate, pacing, state


async def test_the_first_storm_takes_the_count_since_the_anchor_as_the_limit(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """60 answers in the 0.5 s since the account was first booked, its bucket full (1 s):
    L = 60 / 1.5 = 40, the rate settles at 0.97 L and is pushed to every worker."""
    gate, pacing, state = shared
    pacing.on_storm(gate, Storm(oks=60, span=0.5, pause=None), 60)  # type: ignore[arg-type]
    assert gate.known_limit == pytest.approx(40.0)
    assert gate.rate == pytest.approx(0.97 * 40.0)
    await pacing.aclose()
    assert state.pushed[-1][0] == pytest.approx(0.97 * 40.0)
    assert state.pushed[-1][2] is None  # a cut is pushed unconditionally


async def test_a_pause_counts_only_up_to_the_servers_bucket(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """Between two storms 3 s apart, 2 s of them closed: T' = 3 - 2 + min(2, 1) = 2 s."""
    gate, pacing, _ = shared
    pacing.on_storm(gate, Storm(oks=70, span=3.0, pause=2.0), 70)  # type: ignore[arg-type]
    assert gate.known_limit == pytest.approx(35.0)
    await pacing.aclose()


async def test_a_storm_at_about_the_known_limit_moves_it(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """With L = 40 known, a storm reading 38 (>= at_limit * L) makes 38 the limit."""
    gate, pacing, _ = shared
    pacing.on_storm(gate, Storm(oks=60, span=0.5, pause=None), 60)  # type: ignore[arg-type]
    pacing.on_storm(gate, Storm(oks=76, span=2.0, pause=1.0), 76)  # type: ignore[arg-type]
    assert gate.known_limit == pytest.approx(38.0)
    await pacing.aclose()


async def test_storms_well_under_the_known_limit_are_ignored_until_they_repeat(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """With L = 40 known, storms reading about 20 (random 429s, or a lower limit) leave the
    rate alone twice; the third in a row lowers L to the highest of them."""
    gate, pacing, _ = shared
    pacing.on_storm(gate, Storm(oks=60, span=0.5, pause=None), 60)  # type: ignore[arg-type]
    rate = gate.rate
    for oks in (40, 42):
        pacing.on_storm(gate, Storm(oks=oks, span=2.0, pause=1.0), oks)  # type: ignore[arg-type]
        assert gate.rate == rate and gate.known_limit == pytest.approx(40.0)
    pacing.on_storm(gate, Storm(oks=41, span=2.0, pause=1.0), 41)  # type: ignore[arg-type]
    assert gate.known_limit == pytest.approx(21.0)
    assert gate.rate == pytest.approx(0.97 * 21.0)
    await pacing.aclose()


async def test_too_few_answers_give_no_estimate(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """A storm with fewer than 5 answers counted cuts the unknown rate by `decrease`, without
    inventing a limit."""
    gate, pacing, _ = shared
    gate.rate = 100.0
    pacing.on_storm(gate, Storm(oks=3, span=0.5, pause=None), 3)  # type: ignore[arg-type]
    assert gate.known_limit is None
    assert gate.rate == pytest.approx(70.0)
    await pacing.aclose()


async def test_no_slow_probe_until_a_storms_cooldown_is_paid_back(
    shared: tuple[AccountGate, SharedPacing, State], clock: Clock
) -> None:
    """A probe above the limit costs a whole cooldown: after a storm closed the account for
    1 s, the rate does not creep above 0.97 L for 1 / 0.02 = 50 s, then it does."""
    gate, pacing, _ = shared
    pacing.on_storm(gate, Storm(oks=60, span=0.5, pause=None), 60)  # type: ignore[arg-type]
    settled = gate.rate
    assert settled is not None

    def binding_successes(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            clock.now += 0.025
            gate._last_wait = clock.now
            gate.on_success()

    binding_successes(45.0)
    assert gate.rate == settled
    binding_successes(10.0)
    assert gate.rate is not None and gate.rate > settled
    await pacing.aclose()


async def test_the_end_of_the_slow_start_is_pushed_at_once(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """A rate grown a moment ago is pushed; "no limit" right after it is pushed at once too
    (every worker would otherwise stay at the last rate pushed)."""
    gate, pacing, state = shared
    gate.rate = 100.0
    pacing.pushed(gate, cut=False)
    gate.rate = None
    pacing.pushed(gate, cut=False)
    await pacing.aclose()
    assert [rate for rate, _, _ in state.pushed] == [100.0, None]


async def test_a_growth_held_back_is_pushed_when_due(
    shared: tuple[AccountGate, SharedPacing, State], clock: Clock
) -> None:
    """Growths come at most every 0.2 s: one held back is pushed once that time is up, at the
    rate the gate has then (not lost when the rate stops growing)."""
    gate, pacing, state = shared
    gate.rate = 100.0
    pacing.pushed(gate, cut=False)
    clock.now += 0.19
    gate.rate = 150.0
    pacing.pushed(gate, cut=False)
    gate.rate = 160.0
    pacing.pushed(gate, cut=False)
    await anyio.lowlevel.checkpoint()
    assert [rate for rate, _, _ in state.pushed] == [100.0]
    clock.now += 0.01
    await anyio.sleep(0.05)  # (0.01 s were left)
    await pacing.aclose()
    assert [rate for rate, _, _ in state.pushed] == [100.0, 160.0]


async def test_a_storms_wait_before_probing_goes_to_every_worker(
    shared: tuple[AccountGate, SharedPacing, State], clock: Clock
) -> None:
    """The cut a storm pushes carries the seconds left before a slow probe; a worker adopting
    a rate with them does not probe before they are over either."""
    gate, pacing, state = shared
    pacing.on_storm(gate, Storm(oks=60, span=0.5, pause=None), 60)  # type: ignore[arg-type]
    await pacing.aclose()
    adaptive = state.pushed[-1][1]
    assert adaptive is not None and adaptive["quiet"] == pytest.approx(50.0)
    other = AccountGate()
    other_state = State()
    other_state.booking = Booking(rate=38.8, adaptive=adaptive)
    other.share(other_state, "acct")  # type: ignore[arg-type]
    await other.acquire()
    assert other.known_limit == pytest.approx(40.0)
    assert other.shared is not None and other.shared.probe_after == pytest.approx(clock.now + 50)


async def test_answers_arriving_during_a_cooldown_are_reported_before_the_count_is_read(
    shared: tuple[AccountGate, SharedPacing, State],
) -> None:
    """A booking finds the account closed for 0.2 s: the answers the worker gets meanwhile
    (nobody books then) are reported a quarter of it later, before the storm's count is read
    halfway through."""
    gate, pacing, state = shared
    state.booking = Booking(rate=None, adaptive={}, wait=0.2, closed=True)
    with anyio.move_on_after(0.01):
        await gate.acquire()  # (sleeps until the reopening: cut short here)
    for _ in range(3):
        pacing.succeeded()
    await anyio.sleep(0.08)
    assert state.reports == [("book", 0), ("report", 3)]
    await pacing.aclose()
