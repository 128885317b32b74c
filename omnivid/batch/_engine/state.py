"""What every part of the engine shares: the batch's settings, slots, window, budget, journal
link, schedule, workers and counters, and how a job step is handed to a worker.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Hashable

import anyio
import anyio.abc

from ...errors import OmnividError
from .._budget import Budget
from .._client import BatchClient
from .._events import EventHub
from .._job import BatchOptions, Job
from .._journal_link import NoJournal
from .._limiter import Limiter
from .._outcome import Outcome
from .._poller import Schedule, Step, Workers

log = logging.getLogger("omnivid")

_END = object()
__all__ = ["EngineState"]


class EngineState:
    """The state of one batch, shared by the engine's parts (see ``omnivid.batch._engine``)."""

    _schedule: Schedule  # due polls, submits and slot releases (made by the Engine)

    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        options.check()
        self.client = client
        self.options = options
        self.provider = client.provider
        self.time_scale = client.time_scale
        self.prefetch = (
            options.prefetch
            if options.prefetch is not None
            else max(8, min(options.max_in_flight, 64))
        )
        self.slots = Limiter(options.max_in_flight)
        self.window = Limiter(options.max_in_flight + self.prefetch)
        send, receive = anyio.create_memory_object_stream[Outcome](math.inf)
        self._send = send
        self.receive = receive
        self.failure: BaseException | None = None
        self.abandoned: dict[Hashable, str | None] = {}
        self.done = anyio.Event()
        self.budget = Budget(options.max_cost)
        self.events = EventHub(options.on_event)
        self._journal: NoJournal = NoJournal()
        # submits refused for good: None -> the whole account (401, 402, an endpoint never
        # reached), a model -> that model (403); see submit.py
        self._refusals: dict[str | None, OmnividError] = {}
        self.stopped: str | None = None  # why, for BatchStats.stopped
        self._told_not_reached = False  # the retrying event of a never-reached endpoint is out
        self._serial = itertools.count()
        self._workers: Workers | None = None
        self._scope: anyio.CancelScope | None = None
        self._live: dict[int, Job] = {}  # pulled, outcome not yet out
        # a shared journal: jobs another worker holds, by journal key (see shared.py)
        self._held: dict[str, Job] = {}
        self._held_wake = anyio.Event()
        self._by_task: dict[str, Job] = {}  # tasks in flight (zombies included)
        self._input_done = False
        self._idle = anyio.Event()
        self._cleanup: list[Callable[[], None]] = []
        self._counts: Counter[str] = Counter()
        self._http_start: Counter[str] = Counter()
        self._http_end: Counter[str] | None = None
        self._rng = random.Random()
        self._started = False

    def __del__(self) -> None:
        # a batch made but never run (or dropped) must not leave its streams open
        self.close_streams()

    def close_streams(self) -> None:
        """Close the outcome streams (idempotent)."""
        for stream in (getattr(self, "_send", None), getattr(self, "receive", None)):
            if stream is not None:
                stream.close()

    def _dispatch(self, step: Step, job: Job) -> None:
        assert self._workers is not None
        self._workers.dispatch(step, job)
