"""AccountGate, policy "recover": what a 429 storm does to the rate, on a frozen clock.

Each request goes through the gate at the clock's time (after any cooldown and its slot) and
is answered at once; every request is taken to have waited for its slot, so the rate binds
(as it does when a batch has more work than the limit lets through).
"""

from __future__ import annotations

import pytest
from wirehelp import Clock

from omnivid._http.gate import AccountGate

RETRY_AFTER = 0.5


def send(gate: AccountGate, clock: Clock, status: int = 200, *, rtt: float = 0.0) -> None:
    """One request, sent when the gate lets it (the clock moves there), answered ``rtt`` later
    with ``status`` (a 429 carries ``Retry-After: RETRY_AFTER``)."""
    clock.now = max(clock.now, gate.closed_until, gate._next_slot)
    assert gate.acquire_nowait()
    gate._last_wait = clock.now  # it waited for its slot: the rate binds
    clock.now += rtt
    if status == 429:
        gate.on_rate_limited(RETRY_AFTER)
    else:
        gate.on_success()


def run(gate: AccountGate, clock: Clock, seconds: float, rate: float | None = None) -> None:
    """Requests at ``rate`` (default: as fast as the gate allows) for ``seconds`` from when the
    gate reopens, all 200."""
    clock.now = max(clock.now, gate.closed_until)
    end = clock.now + seconds
    while clock.now < end:
        if rate is not None:
            clock.now += 1.0 / rate
        send(gate, clock)


class Bucket:
    """A server's token bucket: ``rate`` tokens a second, at most ``size``; a request takes
    one or is answered 429 (as the simulator's ``--rps``/``--burst``)."""

    def __init__(self, clock: Clock, rate: float, size: float) -> None:
        self.clock, self.rate, self.size = clock, rate, size
        self.tokens, self.at = size, clock.now
        self.answers: list[int] = []

    def answer(self) -> int:
        """The status for a request arriving now."""
        now = self.clock.now
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        status = 200 if self.tokens >= 1.0 else 429
        self.tokens -= status == 200
        self.answers.append(status)
        return status


def serve(gate: AccountGate, clock: Clock, bucket: Bucket, seconds: float) -> None:
    """Requests as fast as the gate lets them go for ``seconds``, answered by ``bucket``."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = max(clock.now, gate.closed_until, gate._next_slot)
        assert gate.acquire_nowait()
        gate._last_wait = clock.now
        if bucket.answer() == 429:
            gate.on_rate_limited(RETRY_AFTER)
        else:
            gate.on_success()
        clock.now += 1e-4  # the next request leaves a little later


def known(limit: float = 100.0) -> AccountGate:
    """A gate that knows the server's limit (as if resumed from an earlier run)."""
    gate = AccountGate()
    assert gate.resume_from(0.97 * limit)
    return gate


def test_a_storm_of_random_429s_does_not_cut_the_rate(clock: Clock) -> None:
    """Within the known limit, a 429 after 2 s of sending, then one on the first request
    after each of three cooldowns: the cooldowns hold, the rate stays where it was."""
    gate = known(100.0)
    run(gate, clock, 2.0)
    before = gate.rate
    send(gate, clock, 429)  # noise: the rate was within the known limit
    for _ in range(3):
        send(gate, clock, 429)  # a burst: the first request after a cooldown
    assert gate.rate == before and 97.0 <= before < 100.0  # type: ignore[operator]
    assert gate.cuts == 0 and gate.ignored == 4 and gate.rate_limited == 4


def test_a_storm_across_cooldowns_cuts_at_most_once(clock: Clock) -> None:
    """Probing above the known limit, the first 429 cuts back under it; the 429s that answer
    the first requests after the next cooldowns do not cut again."""
    gate = known(100.0)
    gate.rate = 130.0  # probing above the limit
    run(gate, clock, 1.0)
    send(gate, clock, 429)  # sending 130/s > L: a failed probe
    assert gate.cuts == 1 and gate.rate == pytest.approx(97.0)
    for _ in range(3):
        send(gate, clock, 429)
    assert gate.cuts == 1 and gate.rate == pytest.approx(97.0)


def test_a_failed_probe_settles_under_the_limit_the_server_showed(clock: Clock) -> None:
    """At 120/s against 100/s with a bucket refilled in the pause, the server lets through
    100 per second (pause counted): L stays 100, the rate goes back to 97."""
    gate = known(100.0)
    send(gate, clock, 429)  # a reference storm (a burst: no cut)
    gate.rate = 120.0
    run(gate, clock, 2.5, rate=120.0)  # 300 accepted in 2.5 s, plus 0.5 s of pause
    send(gate, clock, 429)
    assert gate.limit_estimate == pytest.approx(100.0, rel=0.02)
    assert gate.known_limit == pytest.approx(100.0, rel=0.02) and not gate.provisional
    assert gate.rate == pytest.approx(97.0, rel=0.02)


def test_consistent_lower_estimates_lower_the_limit(clock: Clock) -> None:
    """A lower limit: four 429s in a row, each after 0.8 s at 97/s and a 0.5 s pause, read
    the same 60/s; the known limit comes down to it (confirmed), the rate under it."""
    gate = known(100.0)
    send(gate, clock, 429)
    for _ in range(4):
        run(gate, clock, 0.8, rate=97.0)
        send(gate, clock, 429)
    assert gate.known_limit == pytest.approx(60.0, rel=0.05) and not gate.provisional
    assert gate.rate == pytest.approx(0.97 * gate.known_limit)


def test_persistent_bursts_cut_then_restore_to_the_last_good_rate(clock: Clock) -> None:
    """429s on the first request after every cooldown for longer than `patience` cut the
    rate; once they stop, the rate climbs back multiplicatively to the last good rate (97)
    in about restore * log2(97 / 66) seconds of sending, then only the slow probe."""
    gate = known(100.0)
    run(gate, clock, 1.0)
    before, started = gate.rate, clock.now
    send(gate, clock, 429)
    while gate.cuts == 0:
        send(gate, clock, 429)
    assert clock.now - started >= gate.patience and before is not None
    cut = gate.rate
    assert cut == pytest.approx(0.97 * 0.7 * min(before, 100.0)) and gate.provisional
    run(gate, clock, 0.05)
    assert gate.rate is not None and cut < gate.rate < 97.0 and gate.provisional
    run(gate, clock, 0.15)  # 0.25 * log2(97 / 66) = 0.14 s in all
    assert gate.rate == pytest.approx(97.0) and gate.known_limit == pytest.approx(100.0)
    assert not gate.provisional
    run(gate, clock, 1.0)
    assert gate.rate is not None and gate.rate < 97.0 + 1.0  # then only the slow probe


def test_a_probe_stopped_at_once_confirms_a_provisional_limit(clock: Clock) -> None:
    """Short cooldowns (no Retry-After): a provisional limit probed above and stopped before
    it could estimate anything (3 successes since the last storm) holds: it is confirmed."""
    gate = AccountGate(start_rate=None)
    for _ in range(20):
        clock.now += 0.05
        send(gate, clock)
    gate.on_rate_limited(0.01)  # E1 = 20 / (0.95 + 1): provisional
    assert gate.provisional and gate.known_limit == pytest.approx(20 / 1.95)
    for _ in range(3):
        send(gate, clock)  # 23 sent in the last second: above the limit
    send(gate, clock, 429)
    assert gate.limit_estimate is None and not gate.provisional
    assert gate.known_limit == pytest.approx(20 / 1.95)
    assert gate.rate == pytest.approx(0.97 * 20 / 1.95)


def test_first_storm_sets_a_provisional_limit_from_what_came_before(clock: Clock) -> None:
    """Without a rate, 20 requests in 0.2 s then a 429: E1 = 20 / (0.2 + 1) s, provisional."""
    gate = AccountGate(start_rate=None)
    for _ in range(20):
        clock.now += 0.01
        send(gate, clock)
    clock.now += 0.01
    send(gate, clock, 429)
    assert gate.known_limit == pytest.approx(20 / 1.2) and gate.provisional
    assert gate.rate == pytest.approx(0.97 * 20 / 1.2)


def test_first_run_finds_a_limit_above_its_first_estimate(clock: Clock) -> None:
    """Against 100/s with a bucket of 0.5 s, E1 reads about half the limit; the provisional
    limit is probed fast until two estimates agree near 100/s, in a few storms, then none."""
    gate, server = AccountGate(), Bucket(clock, rate=100.0, size=50.0)
    serve(gate, clock, server, 10.0)
    assert not gate.provisional and gate.known_limit == pytest.approx(100.0, rel=0.1)
    assert gate.rate is not None and 90.0 <= gate.rate <= 100.0
    assert gate.cuts <= 5 and server.answers[-400:].count(429) == 0


def test_first_run_against_a_small_limit_settles_under_it(clock: Clock) -> None:
    """10/s with a bucket of 10 (one second): E1 is right, one more storm confirms it."""
    gate, server = AccountGate(), Bucket(clock, rate=10.0, size=10.0)
    serve(gate, clock, server, 10.0)
    assert not gate.provisional and gate.known_limit == pytest.approx(10.0, rel=0.1)
    assert server.answers.count(429) <= 3 and server.answers[-60:].count(429) == 0


def test_a_lower_limit_is_followed_down(clock: Clock) -> None:
    """The server's limit drops from 100/s to 40/s: failed probes bring the known limit
    down to it within a few seconds."""
    gate, server = known(100.0), Bucket(clock, rate=100.0, size=50.0)
    serve(gate, clock, server, 2.0)
    server.rate = 40.0
    serve(gate, clock, server, 8.0)
    assert gate.known_limit == pytest.approx(40.0, rel=0.15)
    assert server.answers[-150:].count(429) <= 1


def test_slow_start_doubles_per_ramp_then_ends_unlimited(clock: Clock) -> None:
    """With answers at once the rate doubles every `ramp` seconds of binding from 50/s, and
    the gate is unlimited once it passes ramp_to (1,000/s)."""
    gate = AccountGate()
    assert gate.rate == 50.0 and gate.ramping
    send(gate, clock)
    send(gate, clock)  # one slot (20 ms) later: 20 ms of growth, 2 ** (20 / 5)
    assert gate.rate == pytest.approx(800.0)
    send(gate, clock)
    send(gate, clock)
    assert gate.rate is None and not gate.ramping


def test_slow_start_waits_for_answers_on_a_slow_link(clock: Clock) -> None:
    """Answers 50 ms after their request: the rate doubles only every 2 x 50 ms."""
    gate = AccountGate()
    for _ in range(4):
        send(gate, clock, rtt=0.05)
    # three growths of 50 ms (the first answer has no predecessor) at doubling per 100 ms
    assert gate.rate == pytest.approx(50.0 * 2**1.5, rel=0.05) and gate.ramping


def test_learned_rate_starts_the_next_run(clock: Clock) -> None:
    """A gate that found the limit exports settle * L; a fresh gate resumes from it: same
    pace and known limit, no slow start; it refuses once it has a rate of its own."""
    first = AccountGate(start_rate=None)
    assert first.learned_rate is None  # nothing found yet
    run(first, clock, 1.0, rate=10.0)
    for _ in range(3):
        send(first, clock, 429)
        run(first, clock, 1.0, rate=10.0)
    learned = first.learned_rate
    assert learned is not None and learned == pytest.approx(0.97 * first.known_limit)  # type: ignore[operator]
    second = AccountGate()
    assert second.ramping and second.resume_from(learned)
    assert second.rate == pytest.approx(learned) and not second.ramping
    assert second.known_limit == pytest.approx(first.known_limit) and second.cuts == 0
    assert not second.resume_from(50.0) and second.rate == pytest.approx(learned)


def test_resume_from_is_refused_after_a_rate_was_given(clock: Clock) -> None:
    """A rate given to the gate (rate_limit=) wins over a learnt one."""
    gate = AccountGate(rate=5.0)
    assert not gate.resume_from(40.0) and gate.rate == 5.0 and gate.known_limit is None
    with pytest.raises(ValueError, match="rate"):
        AccountGate().resume_from(0.0)


def test_policy_aimd_cuts_at_every_storm_where_recover_cuts_once(clock: Clock) -> None:
    """The same storm (one 429 after 1 s of sending, then one per cooldown): the policy
    before cuts three times, "recover" not at all."""
    gates = {"aimd": AccountGate(rate=97.0, policy="aimd"), "recover": known(100.0)}
    before = {}
    for name, gate in gates.items():
        run(gate, clock, 1.0)
        before[name] = gate.rate
        for _ in range(3):
            send(gate, clock, 429)
    assert gates["aimd"].cuts == 3
    assert gates["aimd"].rate == pytest.approx(before["aimd"] * 0.7**3)  # type: ignore[operator]
    assert gates["recover"].cuts == 0 and gates["recover"].rate == before["recover"]


def test_unknown_policy_is_refused() -> None:
    """Only "recover" and "aimd" exist."""
    with pytest.raises(ValueError, match="policy"):
        AccountGate(policy="cubic")  # type: ignore[arg-type]
