"""B6 recovery after 429 storms: the adaptive rate before and after, and a semaphore loop.

The simulator limits the key to ``R = 100`` requests per real second with a bucket of 50
(``--rps 100 --burst 50``), announces ``Retry-After: 0.5`` on every 429 and completes tasks at
their first poll (``--instant``). Each contender runs ``JOBS = 900`` jobs with 64 in flight
(one submit and one poll per job: the calm run takes the limit's own pace, 1,800 / R = 18 s)
in three scenarios, each against a fresh simulator:

* **calm**: only the server's limit;
* **storm**: from ``STORM_AT = 3 s`` after the start, for ``STORM_FOR = 1.5 s``, 60% of
  requests get a random 429 (``POST /_sim/config {"rate_limit_rate": 0.6}``, then 0);
* **1% 429s**: 1% of requests get a random 429 for the whole run.

Contenders: omnivid ``map`` (``IMMEDIATE`` polls) with the gate's default policy
(``"recover"``) and with the policy before it (``AccountGate(policy="aimd")``, put on the
client before it opens), and the semaphore-only loop of B3 (64 bare-aiohttp workers, each 429
retried by its own coroutine after the ``Retry-After``; no shared cooldown, no rate limiter).
For omnivid a sampler reads the gate every 20 ms::

    stormy / calm  = wall seconds in the storm / wall seconds calm        (target <= 1.2)
    rate kept      = mean over samples while the gate is open, after the first 1 s,
                     of min(gate.rate, R) / R   (None: unlimited, counts as R) (target >= 0.85,
                                                                            1% 429s)
    accepted/s     = answers other than 429 / wall seconds

A random 429 closes the gate for its ``Retry-After`` whatever the rate, so the wall time of
the 1% run is not the rate's doing; "rate kept" measures what the adaptive rate made of it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import anyio
from attrs import define, field

import omnivid
from omnivid._http.gate import RatePolicy

from ._baselines import semaphore_loop, session
from ._harness import BenchResult, RequestLog, SimOptions, SimProcess, Table, Target, fmt
from ._omnivid import IMMEDIATE, with_policy

__all__ = ["run", "run_once"]

MODEL = "gemini-omni-flash-preview"
RATE, BURST, RETRY_AFTER = 100.0, 50.0, 0.5
CONCURRENCY = 64
JOBS, QUICK_JOBS = 900, 40
STORM_AT, STORM_FOR, STORM_SHARE = 3.0, 1.5, 0.6
QUICK_STORM_AT, QUICK_STORM_FOR = 0.2, 0.15
RANDOM_SHARE = 0.01
SAMPLE_EVERY, RATE_WARMUP = 0.02, 1.0
SCENARIOS = ("calm", "storm", "1% 429s")


@define
class RecoveryRun:
    """One contender in one scenario."""

    contender: str
    scenario: str
    jobs: int
    completed: int
    wall: float
    answers: int
    limited: int
    server_429s: int
    samples: list[tuple[float, float | None, bool]] = field(factory=list)  # (t, rate, open)

    @property
    def accepted_per_s(self) -> float:
        """Answers other than 429 per wall second."""
        return (self.answers - self.limited) / self.wall if self.wall else float("nan")

    @property
    def kept(self) -> float:
        """Mean of min(rate, R) / R while the gate was open, after the first second (every
        open sample in a run shorter than that, as with ``--quick``)."""
        open_samples = [(t, rate) for t, rate, is_open in self.samples if is_open]
        late = [rate for t, rate in open_samples if t >= RATE_WARMUP]
        rates = late or [rate for _, rate in open_samples]
        kept = [min(rate, RATE) / RATE if rate is not None else 1.0 for rate in rates]
        return sum(kept) / len(kept) if kept else float("nan")

    @property
    def lowest(self) -> float:
        """The lowest rate sampled after the first second (NaN: none sampled)."""
        rates = [r for t, r, _ in self.samples if t >= RATE_WARMUP and r is not None]
        return min(rates) if rates else float("nan")


def _requests(n: int) -> Iterator[omnivid.VideoRequest]:
    for i in range(n):
        yield omnivid.VideoRequest(model=MODEL, prompt=f"recovery job {i}")


def _bodies(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"model": MODEL, "prompt": f"recovery job {i}"}


async def _configure(http: aiohttp.ClientSession, sim: SimProcess, share: float) -> None:
    async with http.post(sim.root_url + "/_sim/config", json={"rate_limit_rate": share}) as resp:
        resp.raise_for_status()


async def _storm(sim: SimProcess, at: float, lasting: float) -> None:
    """60% random 429s from ``at`` seconds on, for ``lasting`` seconds."""
    async with aiohttp.ClientSession() as http:
        await anyio.sleep(at)
        await _configure(http, sim, STORM_SHARE)
        await anyio.sleep(lasting)
        await _configure(http, sim, 0.0)


Go = Callable[[SimProcess, int, RequestLog, list[tuple[float, float | None, bool]]], Awaitable[int]]


def _omnivid(policy: RatePolicy) -> Go:
    async def go(
        sim: SimProcess, jobs: int, log: RequestLog, samples: list[tuple[float, float | None, bool]]
    ) -> int:
        completed = 0
        async with session(trace=[log.trace_config()]) as http:
            client = omnivid.AsyncClient(
                "apimart",
                base_url=sim.base_url(),
                api_key=sim.api_key,
                session=http,
                poll=IMMEDIATE,
            )
            gate, start = with_policy(client, policy).gate, anyio.current_time()

            async def sample() -> None:
                while True:
                    now = anyio.current_time()
                    samples.append((now - start, gate.rate, now >= gate.closed_until))
                    await anyio.sleep(SAMPLE_EVERY)

            async with client, anyio.create_task_group() as tg:
                tg.start_soon(sample)
                async with client.map(_requests(jobs), max_in_flight=CONCURRENCY) as outcomes:
                    async for outcome in outcomes:
                        completed += outcome.ok
                tg.cancel_scope.cancel()
        return completed

    return go


async def _semaphore(
    sim: SimProcess, jobs: int, log: RequestLog, samples: list[tuple[float, float | None, bool]]
) -> int:
    counts = await semaphore_loop(
        sim.base_url(),
        sim.api_key,
        _bodies(jobs),
        concurrency=CONCURRENCY,
        duration=3600.0,
        poll_delay=0.0,
        trace=[log.trace_config()],
    )
    return counts.completed


CONTENDERS: dict[str, Go] = {
    "omnivid map, recover": _omnivid("recover"),
    "omnivid map, aimd (before)": _omnivid("aimd"),
    "semaphore only": _semaphore,
}


def run_once(contender: str, scenario: str, quick: bool) -> RecoveryRun:
    """``contender`` through ``scenario`` against a fresh simulator."""
    jobs = QUICK_JOBS if quick else JOBS
    storm_at, storm_for = (QUICK_STORM_AT, QUICK_STORM_FOR) if quick else (STORM_AT, STORM_FOR)
    options = SimOptions(instant=True, rps=RATE, burst=BURST, retry_after_seconds=RETRY_AFTER)
    log = RequestLog()
    samples: list[tuple[float, float | None, bool]] = []
    go = CONTENDERS[contender]

    async def main(sim: SimProcess) -> tuple[int, float]:
        async with aiohttp.ClientSession() as http:
            await _configure(http, sim, RANDOM_SHARE if scenario == "1% 429s" else 0.0)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            if scenario == "storm":
                tg.start_soon(_storm, sim, storm_at, storm_for)
            completed = await go(sim, jobs, log, samples)
            tg.cancel_scope.cancel()
        return completed, time.monotonic() - started

    with SimProcess(options) as sim:
        completed, wall = anyio.run(main, sim)
        stats = sim.stats()
    statuses = [status for _, _, status in log.records]
    return RecoveryRun(
        contender,
        scenario,
        jobs,
        completed,
        wall,
        len(statuses),
        sum(1 for s in statuses if s == 429),
        int(stats["rate_limited"]),
        samples,
    )


def run(quick: bool = False) -> BenchResult:
    """Run B6 and return its result."""
    started = time.perf_counter()
    runs = {
        (name, scenario): run_once(name, scenario, quick)
        for name, scenario in itertools.product(CONTENDERS, SCENARIOS)
    }
    table = Table(
        [
            "contender",
            "scenario",
            "jobs done",
            "wall s",
            "x calm",
            "429s",
            "accepted/s",
            "rate kept (% of R)",
            "lowest rate",
        ]
    )
    for (name, scenario), r in runs.items():
        calm = runs[(name, "calm")].wall
        omnivid_run = name.startswith("omnivid")
        table.add(
            name,
            scenario,
            f"{r.completed:,}/{r.jobs:,}",
            fmt(r.wall, 2),
            f"{fmt(r.wall / calm, 2)}x",
            f"{r.server_429s:,}",
            fmt(r.accepted_per_s, 1),
            fmt(100 * r.kept, 1) if omnivid_run else "-",
            fmt(r.lowest, 1) if omnivid_run else "-",
        )
    new = "omnivid map, recover"
    ratio = runs[(new, "storm")].wall / runs[(new, "calm")].wall
    kept = runs[(new, "1% 429s")].kept
    targets = [
        Target("stormy / calm wall time <= 1.2x (omnivid)", f"{fmt(ratio, 2)}x", ratio <= 1.2),
        Target(
            ">= 85% of the limit kept with 1% random 429s (omnivid)",
            f"{fmt(100 * kept, 1)} %",
            kept >= 0.85,
        ),
    ]
    storm_at, storm_for = (QUICK_STORM_AT, QUICK_STORM_FOR) if quick else (STORM_AT, STORM_FOR)
    result = BenchResult(
        "b6",
        f"recovery after 429 storms, R = {RATE:g} requests/s, bucket {BURST:g}",
        params={
            "R": RATE,
            "burst": BURST,
            "retry_after_s": RETRY_AFTER,
            "jobs": QUICK_JOBS if quick else JOBS,
            "max_in_flight": CONCURRENCY,
            "storm": f"{STORM_SHARE:.0%} 429s from {storm_at:g} s for {storm_for:g} s",
            "random_429s": f"{RANDOM_SHARE:.0%}",
        },
        tables=[table],
        targets=targets,
        notes=[
            "429s: the simulator's count (the server's limit and the random ones alike)",
            "rate kept: the gate's rate sampled every 20 ms while it was open, after the first "
            "second, capped at R; the semaphore loop has no rate",
            "every 429 closes omnivid's gate for its Retry-After (0.5 s), whatever the policy",
        ],
        data={
            f"{r.contender} / {r.scenario}": {
                "completed": r.completed,
                "wall_s": r.wall,
                "answers": r.answers,
                "server_429s": r.server_429s,
                "accepted_per_s": r.accepted_per_s,
                "rate_kept": r.kept if r.contender.startswith("omnivid") else None,
            }
            for r in runs.values()
        },
    )
    result.data["storm_over_calm"] = ratio
    result.data["rate_kept_1pct"] = kept
    result.seconds = time.perf_counter() - started
    return result
