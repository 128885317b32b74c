"""Simulated time, tasks and their lifecycle, the money ledger and per-key rate limits.

`SimState` bundles them with the settings, the counters and the random source: it is what the
simulator's parts (`Simulator` itself, the API routes, file serving, fault drawing, callbacks)
share.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Sequence

import attrs

from ._config import FaultConfig, SimConfig
from ._markers import Markers
from ._stats import RequestRecord, SimStats
from ._wire import TaskView

PENDING_FRACTION = 0.05
# Fraction of the true duration at which a task that will not complete reaches its end.
END_FRACTION = {"quota": 0.1, "moderation": 0.5, "timeout": 1.0, "cancel": 0.5}


class SimClock:
    """Simulated wall-clock time: runs ``1 / time_scale`` times as fast as real time.

    ``now()`` is in simulated unix seconds; ``advance()`` jumps it forward (task ends and URL
    expiry follow). It starts at the real time, or at ``start`` (a simulator going on from its
    state file).
    """

    def __init__(self, time_scale: float, start: float | None = None) -> None:
        self.time_scale = time_scale
        self._wall0 = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        """Simulated unix time."""
        return self._wall0 + (time.monotonic() - self._mono0) / self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._offset += seconds

    def real_seconds(self, simulated: float) -> float:
        """Real seconds that ``simulated`` seconds take."""
        return simulated * self.time_scale


@attrs.define(eq=False)
class SimTask:
    """One generation task. Times are simulated unix seconds."""

    id: str
    provider: str
    model: str
    api_key: str
    created: float
    duration: float  # the true generation time
    estimated_time: int
    markers: Markers
    outcome: str | None = None  # None: completes; else a cause ("quota", ..., "cancel")
    video_duration: int = 10
    credits_reserved: float = 0.0
    price: tuple[float, float] = (0.0, 0.0)  # (cost, credits) charged on completion
    held: float = 0.0  # currency held against the key's budget until the task ends
    callback_url: str | None = None
    fingerprint: str = ""  # of the submit body that created it (see `_stats.fingerprint`)
    status: str | None = None  # set when terminal
    ended: float | None = None
    expires_at: float | None = None
    charged: tuple[float, float] = (0, 0)

    @property
    def end_time(self) -> float:
        """When the task reaches its terminal status."""
        fraction = 1.0 if self.outcome is None else END_FRACTION[self.outcome]
        return self.created + self.duration * fraction

    def finish(self, url_ttl: float) -> None:
        """Make the task terminal at its end time."""
        self.ended = self.end_time
        if self.outcome is None:
            self.status = "completed"
            self.expires_at = self.ended + url_ttl
            self.charged = self.price
        else:
            self.status = "cancelled" if self.outcome == "cancel" else "failed"

    def view(self, now: float, urls: tuple[str, ...]) -> TaskView:
        """The task as seen at simulated time ``now``."""
        pending = TaskView(
            id=self.id,
            model=self.model,
            status="pending",
            progress=0,
            created=int(self.created),
            estimated_time=self.estimated_time,
            video_duration=self.video_duration,
            credits_reserved=self.credits_reserved,
        )
        if self.status is not None and self.ended is not None:
            return attrs.evolve(
                pending,
                status=self.status,
                progress=100,
                completed=int(self.ended),
                actual_time=round(self.ended - self.created),
                cost=self.charged[0],
                credits=self.charged[1],
                urls=urls if self.status == "completed" else (),
                expires_at=None if self.expires_at is None else int(self.expires_at),
                cause=self.outcome,
            )
        elapsed = now - self.created
        if elapsed < self.duration * PENDING_FRACTION:
            return pending
        fraction = elapsed / self.duration if self.duration else 1.0
        progress = max(1, min(99, int(fraction * 100)))
        return attrs.evolve(pending, status="processing", progress=progress)


class TaskStore:
    """All tasks, the schedule of their ends, and the non-terminal count per key.

    ``saver``, when set, is called with the tasks that changed (a new task, tasks that ended)
    before `add` or `advance` returns: the simulator's state file writes them there, so a task
    is on file before its submit is answered.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, SimTask] = {}
        self.in_flight: dict[str, int] = {}
        self.saver: Callable[[Sequence[SimTask]], None] | None = None
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0

    def add(self, task: SimTask) -> int:
        """Store a new task; returns the key's in-flight count including it."""
        self.load(task)
        if self.saver is not None:
            self.saver([task])
        return self.in_flight[task.api_key]

    def load(self, task: SimTask) -> None:
        """Store a task as it is (a new one, or one read back from a state file, maybe ended)."""
        self.tasks[task.id] = task
        if task.status is None:
            self._seq += 1
            heapq.heappush(self._due, (task.end_time, self._seq, task.id))
            self.in_flight[task.api_key] = self.in_flight.get(task.api_key, 0) + 1

    def get(self, task_id: str) -> SimTask | None:
        return self.tasks.get(task_id)

    def advance(self, now: float, url_ttl: float) -> list[SimTask]:
        """Finish every task whose end time has come; returns them in order."""
        done = []
        while self._due and self._due[0][0] <= now:
            _, _, task_id = heapq.heappop(self._due)
            task = self.tasks[task_id]
            task.finish(url_ttl)
            self.in_flight[task.api_key] -= 1
            done.append(task)
        if done and self.saver is not None:
            self.saver(done)
        return done

    def next_end(self) -> float | None:
        """The earliest end time of a non-terminal task."""
        return self._due[0][0] if self._due else None


class Ledger:
    """Money per API key: held for tasks in flight, spent on completed ones."""

    def __init__(self) -> None:
        self.held: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def remaining(self, key: str, budget: float) -> float:
        return budget - self.spent.get(key, 0.0) - self.held.get(key, 0.0)

    def hold(self, key: str, amount: float) -> None:
        self.held[key] = self.held.get(key, 0.0) + amount

    def settle(self, key: str, held: float, charged: float) -> None:
        self.held[key] = self.held.get(key, 0.0) - held
        self.spent[key] = self.spent.get(key, 0.0) + charged


class TokenBuckets:
    """Per-key token buckets over real time (``time.monotonic``)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def take(self, key: str, rate: float, burst: float) -> bool:
        """Take one token for ``key``; False if the bucket is empty."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


@attrs.define(eq=False)
class SimState:
    """Everything the simulator's parts share: settings, counters, randomness and task state.

    ``config``, ``faults`` and ``stats`` may be replaced while the simulator runs (and ``clock``
    is replaced on start), so a part keeps the `SimState` and reads them from it every time.
    One ``rng`` serves every draw (faults, outcomes, durations, task ids), so a seed replays a
    run exactly.
    """

    config: SimConfig
    faults: FaultConfig
    rng: random.Random
    clock: SimClock
    stats: SimStats = attrs.Factory(SimStats)
    request_log: list[RequestRecord] = attrs.Factory(list)
    store: TaskStore = attrs.Factory(TaskStore)
    ledger: Ledger = attrs.Factory(Ledger)
    buckets: TokenBuckets = attrs.Factory(TokenBuckets)
    # How often each fault marker has fired, by (stage, scope, marker text).
    marker_hits: dict[tuple[str, str, str], int] = attrs.Factory(dict)


def format_retry_after(seconds: float) -> str:
    """Delta-seconds for ``Retry-After``: an integer when whole, else up to 3 decimals."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{math.ceil(seconds * 1000) / 1000:g}"
