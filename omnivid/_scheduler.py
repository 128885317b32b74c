"""The batch scheduler behind ``client.map`` and ``client.open_batch``.

One :class:`Engine` runs one batch inside a task group:

* the **feeder** (the engine's own task) pulls jobs from the input only when there is room:
  at most ``max_in_flight + prefetch`` jobs are held between being pulled and their outcome
  being received by the caller (the *window*), so a generator of a million requests runs in
  constant memory. Each job then waits for an in-flight *slot* (``max_in_flight``: tasks
  submitted and not known to be terminal), and is submitted in its own short task.
* the **poller** is one task owning a heap of due times (``(due, seq, action, job, gen)``; a
  job's older entries are dropped lazily by generation). Due polls are dispatched as short
  tasks, so a slow answer delays nobody else; there is no sleeping coroutine per task. Poll
  timing is ``client.poll.next_delay`` (server hint for the first poll, progress-based
  re-estimates after, jitter, caps); ``client.nudge(task_id)`` (a callback arrived) moves a
  task's next poll to now.
* every request goes through the client's transport, hence through the account's
  :class:`~omnivid._limits.AccountGate` (shared 429 cooldown, adaptive rate limit).

A job ends with exactly one :class:`~omnivid.Outcome`. Failures never raise out of the
iterator: a failed task (after the :class:`~omnivid.ResubmitPolicy` gave up), a deadline
(``TaskTimeoutError`` carrying the task id), an ambiguous submit (``SubmissionUnknownError``
carrying the fingerprint), a budget stop (``BudgetExceededError``), an invalid request
(``ValidationError``), a refused submit (``APIError``), a journal conflict
(``JournalConflictError``) all arrive as outcomes.

Slots and money. A slot is released only when the provider's task is known to be terminal:
after a deadline the outcome is delivered at once but the task keeps its slot and is polled
quietly until it ends (its result then goes to the journal); after an ambiguous submit the
slot stays taken for the model's typical duration (``ambiguous_hold``), since the provider may
be running it. Submits that provably never reached the provider (429, connection refused) are
sent again after a back-off (at most 20 times). The budget (``max_cost``) reserves each job's
estimated cost before its submit: a job waits while in-flight reservations could still free
room, and once spent + reserved + estimate can no longer fit, no new task is submitted and
every remaining job comes back ``not_submitted`` (``BudgetExceededError``). An ambiguous
submit's reservation counts as spent.

Cancellation (leaving ``async with``, breaking the loop, an enclosing cancel scope) stops
feeding and polling at once; a submit whose POST is already on the wire is allowed to finish
(the transport shields it) so its task id is recorded, not lost. The ids of tasks left running
are in ``abandoned``, logged at WARNING, emitted as ``abandoned`` events and kept in the
journal, so a rerun resumes them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import random
import uuid
from collections import Counter, deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import field, frozen

from ._batch_limiter import Limiter
from ._batch_policy import (
    CostEstimate,
    ResubmitPolicy,
    estimate_cost,
    reserved_after_submit,
    task_cost,
)
from ._journal import Journal, JournalEntry
from ._models import Task, TaskStatus, VideoRequest
from ._outcome import BatchStats, Event, EventKind, Outcome
from ._transport import _NotSent
from .errors import (
    BudgetExceededError,
    JournalConflictError,
    NotFoundError,
    OmnividError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["BatchOptions", "Engine", "Event", "Outcome"]

log = logging.getLogger("omnivid")

_POLL, _SUBMIT, _RELEASE = 0, 1, 2
_MAX_REQUEUES = 20
_MAX_POLL_FAILURES = 30
_END = object()

EventHandler = Callable[[Event], None]


def _positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise ValidationError(name, value, "must be a positive number of seconds or None")


@frozen(kw_only=True)
class BatchOptions:
    """How a batch runs; see :meth:`omnivid.AsyncClient.map` for each setting."""

    max_in_flight: int = 16
    max_cost: float | None = None
    deadline: float | None = None
    resubmit: ResubmitPolicy | None = field(factory=ResubmitPolicy)
    journal: str | os.PathLike[str] | Journal | None = None
    resubmit_ambiguous: bool = False
    on_event: EventHandler | None = field(default=None, eq=False)
    cost_estimate: CostEstimate | None = field(default=None, eq=False)
    prefetch: int | None = None
    ambiguous_hold: float | None = None

    def check(self) -> None:
        """``ValidationError`` naming the first bad setting."""
        m = self.max_in_flight
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValidationError("max_in_flight", m, "must be an integer >= 1")
        c = self.max_cost
        if c is not None and (isinstance(c, bool) or not isinstance(c, int | float) or c < 0):
            raise ValidationError("max_cost", c, "must be a number >= 0 or None")
        _positive_or_none("deadline", self.deadline)
        p = self.prefetch
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 0):
            raise ValidationError("prefetch", p, "must be an integer >= 0 or None")
        h = self.ambiguous_hold
        if h is not None and (not isinstance(h, int | float) or h < 0):
            raise ValidationError("ambiguous_hold", h, "must be a number of seconds >= 0")
        j = self.journal
        if j is not None and not isinstance(j, Journal | str | os.PathLike):
            raise ValidationError("journal", j, "must be a path, a Journal or None")


class _Job:
    """One job's mutable state inside the engine."""

    __slots__ = (
        "ambiguous_count",
        "attempts",
        "body",
        "completed_at",
        "cost",
        "deadline_at",
        "estimate",
        "fp",
        "first_poll",
        "gen",
        "jkey",
        "key",
        "nudged",
        "phase",
        "poll_failures",
        "queued_at",
        "request",
        "requeues",
        "reserved",
        "serial",
        "submitted_at",
        "task",
        "task_ids",
        "typical",
        "zombie",
    )

    @property
    def fingerprint(self) -> str:
        """The request's fingerprint (computed once, when first needed)."""
        if self.fp is None:
            self.fp = self.request.fingerprint()
        return self.fp

    def __init__(self, serial: int, key: Hashable, request: VideoRequest, now: float) -> None:
        self.serial = serial
        self.key = key
        self.jkey: str | None = None
        self.request = request
        self.fp: str | None = None
        self.body: dict[str, Any] | None = None
        self.attempts = 0
        self.task_ids: list[str] = []
        self.task: Task | None = None
        self.cost = 0.0
        self.reserved = 0.0
        self.estimate = 0.0
        self.queued_at = now
        self.submitted_at: float | None = None
        self.completed_at: float | None = None
        self.deadline_at: float | None = None
        self.first_poll = True
        self.gen = 0
        self.phase = "queued"  # queued | submitting | waiting | polling | backoff | done
        self.nudged = False
        self.requeues = 0
        self.poll_failures = 0
        self.typical = 60.0
        self.zombie = False
        self.ambiguous_count = 0


class Engine:
    """Runs one batch; see the module docstring. Used through ``Batch`` / ``MapRun``."""

    def __init__(self, client: AsyncClient, options: BatchOptions) -> None:
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
        self._run_id = uuid.uuid4().hex
        self._journal: Journal | None = None
        self._serial = itertools.count()
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, int, Any, int]] = []
        self._wake = anyio.Event()
        self._sleep_until = math.inf
        self._tg: anyio.abc.TaskGroup | None = None
        self._ready: deque[tuple[Callable[[_Job], Awaitable[Any]], _Job]] = deque()
        self._parked: list[anyio.Event] = []  # idle workers
        self._scope: anyio.CancelScope | None = None
        self._live: dict[int, _Job] = {}
        self._live_keys: set[str] = set()
        self._by_task: dict[str, _Job] = {}
        self._input_done = False
        self._idle = anyio.Event()
        self._spent = 0.0
        self._reserved = 0.0
        self._budget_closed = False
        self._budget_changed = anyio.Event()
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._counts: Counter[str] = Counter()
        self._http_start: Counter[str] = Counter()
        self._http_end: Counter[str] | None = None
        self._handler_failed = False
        self._rng = random.Random()
        self._started = False

    def __del__(self) -> None:
        # a batch made but never run (or dropped) must not leave its streams open
        for stream in (getattr(self, "_send", None), getattr(self, "receive", None)):
            if stream is not None:
                stream.close()

    # -- public surface (through Batch / MapRun) ---------------------------------------------
    @property
    def max_in_flight(self) -> int:
        """The in-flight limit; can be changed while the batch runs."""
        return self.slots.capacity

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError("max_in_flight", value, "must be an integer >= 1")
        self.slots.capacity = value
        self.window.capacity = value + self.prefetch

    def cancel(self) -> None:
        """Stop the batch now (from the same thread, e.g. a finalizer)."""
        if self._scope is not None:
            self._scope.cancel()

    def events(self) -> AsyncIterator[Event]:
        """A new async iterator over the batch's events from now on; it ends with the batch."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        if self.done.is_set():
            send.close()
        else:
            self._subscribers.append(send)
        return _EventIterator(receive)

    def statistics(self) -> BatchStats:
        """Counters so far (see :class:`~omnivid.BatchStats`)."""
        http = self._http_now() - self._http_start
        c = self._counts
        tasks = c["submitted"] + c["resumed"]
        polls = http["polls"]
        return BatchStats(
            jobs=c["jobs"],
            submitted=c["submitted"],
            resumed=c["resumed"],
            in_flight=len(self._by_task),
            completed=c["completed"],
            failed=c["failed"],
            from_journal=c["from_journal"],
            resubmits=c["resubmits"],
            requests=http["submits"] + polls,
            submits=http["submits"],
            polls=polls,
            polls_per_task=polls / tasks if tasks else 0.0,
            rate_limited=http["rate_limited"],
            retries=http["retries"],
            ambiguous=c["ambiguous"],
            cost_spent=self._spent,
            cost_reserved=self._reserved,
            rate=self.client.gate.rate,
        )

    # -- running -----------------------------------------------------------------------------
    async def run(self, source: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Run the batch over ``source`` until every job has its outcome (or cancellation)."""
        if self._started:
            raise RuntimeError("a batch runs once")
        self._started = True
        iterator: Iterator[Any] | AsyncIterator[Any]
        iterator = aiter(source) if isinstance(source, AsyncIterable) else iter(source)
        try:
            self._http_start = Counter(self.client.transport.counters)
            self._open_journal()
            gate = self.client.gate
            self._unsubscribe.append(gate.subscribe(self._on_rate_limited))
            listeners: list[Callable[[str], bool]] = self.client._nudge_listeners
            listeners.append(self._on_nudge)
            self._unsubscribe.append(lambda: listeners.remove(self._on_nudge))
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._scope = tg.cancel_scope
                tg.start_soon(self._poller)
                await self._feed(iterator)
                self._input_done = True
                if self._live:
                    await self._idle.wait()
                tg.cancel_scope.cancel()
        except Exception as exc:  # a bug or a broken journal: surface it to the consumer
            self.failure = self.failure or exc
        finally:
            self._finalize()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    def _open_journal(self) -> None:
        j = self.options.journal
        if j is None:
            return
        if isinstance(j, Journal):
            self._journal = j
        else:
            self._journal = Journal.open(j)
            self._unsubscribe.append(self._journal.close)

    # -- feeding -----------------------------------------------------------------------------
    async def _feed(self, iterator: Iterator[Any] | AsyncIterator[Any]) -> None:
        index = 0
        window = self.window
        while True:
            if not window.try_acquire():
                await window.acquire()
            try:
                if isinstance(iterator, AsyncIterator):
                    item = await anext(iterator, _END)
                else:
                    item = next(iterator, _END)
            except Exception as exc:
                window.release()
                self.failure = exc
                log.error("the batch input raised %s; no more jobs are taken", type(exc).__name__)
                return
            if item is _END:
                window.release()
                return
            job = self._make_job(item, index)
            index += 1
            if job is None:
                window.release()
                return
            self._counts["jobs"] += 1
            self._live[job.serial] = job
            if self._journal is not None and not self._check_journal(job):
                continue
            if job.phase == "done":
                continue
            if not self.slots.try_acquire():
                await self.slots.acquire()
            if job.task_ids and job.phase == "resumed":
                self._resume(job)
            else:
                self._tg_start(self._submit, job)

    def _make_job(self, item: Any, index: int) -> _Job | None:
        now = anyio.current_time()
        key: Hashable
        if isinstance(item, VideoRequest):
            key, request = index, item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], VideoRequest):
            key, request = item
        else:
            self.failure = ValidationError(
                f"requests[{index}]",
                item,
                "expected a VideoRequest or a (key, VideoRequest) pair",
            )
            return None
        job = _Job(next(self._serial), key, request, now)
        spec = self.provider.models.get(request.model)
        if spec is not None:
            job.typical = spec.typical_seconds
        return job

    def _check_journal(self, job: _Job) -> bool:
        """Match ``job`` with its journal entry. False when the job already ended."""
        journal = self._journal
        assert journal is not None
        key = job.key
        if isinstance(key, bool) or not isinstance(key, str | int):
            self._end_not_submitted(
                job,
                ValidationError("key", key, "with a journal, keys must be strings or integers"),
                record=False,
            )
            return False
        jkey = str(key)
        if jkey in self._live_keys:
            self._end_not_submitted(job, _duplicate(jkey), record=False)
            return False
        entry = journal.get(jkey)
        if entry is not None:
            conflict = self._conflict(job, entry)
            if conflict is not None:
                self._end_not_submitted(job, conflict, record=False)
                return False
        job.jkey = jkey
        self._live_keys.add(jkey)
        if entry is None or entry.state == "not_submitted":
            return True
        job.attempts = entry.attempts
        job.task_ids = list(entry.task_ids)
        job.cost = entry.cost or 0.0
        if entry.terminal:
            self._end_from_journal(job, entry)
            return False
        if entry.state == "submitted" and entry.task_id:
            job.phase = "resumed"
            return True
        # intent without a task id: the submit's answer is unknown
        if self.options.resubmit_ambiguous:
            self._emit("retrying", job, None, reason="ambiguous", attempt=job.attempts + 1)
            log.warning(
                "key %s: resubmitting a request whose earlier submit may have been accepted "
                "(fingerprint %s), as asked",
                jkey,
                job.fingerprint[:16],
            )
            return True
        error = SubmissionUnknownError(
            f"an earlier run recorded the intent to submit key {jkey!r} but not the "
            f"provider's answer: {self.provider.name} may be running (and billing) it. Not "
            f"resubmitted; check the provider's task list for request fingerprint "
            f"{job.fingerprint[:16]}, then rerun with resubmit_ambiguous=True if it is not",
            fingerprint=job.fingerprint,
            provider=self.provider.name,
            model=job.request.model,
        )
        self._counts["ambiguous"] += 1
        self._end(job, error=error, kind="ambiguous")
        return False

    def _conflict(self, job: _Job, entry: JournalEntry) -> JournalConflictError | None:
        jkey = str(job.key)
        if entry.run == self._run_id and entry.state != "not_submitted":
            return _duplicate(jkey)
        if entry.fingerprint != job.fingerprint or entry.provider != self.provider.name:
            return JournalConflictError(
                "key",
                jkey,
                f"the journal already holds a different request under this key "
                f"({entry.provider} {entry.model}, fingerprint {entry.fingerprint[:16]}, "
                f"state {entry.state}); use a new key or a new journal",
                provider=self.provider.name,
                model=job.request.model,
            )
        return None

    # -- submitting --------------------------------------------------------------------------
    async def _submit(self, job: _Job) -> None:
        """Submit ``job`` (it holds a slot); ends with the job polled, requeued or ended."""
        job.phase = "submitting"
        if not await self._reserve(job):
            return
        if job.body is None:
            try:
                job.body = self.client.build_body(job.request)
            except ValidationError as exc:
                self._refund(job)
                self.slots.release()
                self._end_not_submitted(job, exc)
                return
        if job.jkey is not None and self._journal is not None:
            self._journal.record_intent(
                job.jkey,
                job.request,
                provider=self.provider.name,
                fingerprint=job.fingerprint,
                run=self._run_id,
            )
        job.phase = "posting"
        try:
            task = await self.client.submit(job.request, body=job.body)
        except SubmissionUnknownError as exc:
            self._on_ambiguous(job, exc)
            return
        except (RateLimitError, _NotSent) as exc:
            self._refund(job)
            self._requeue(job, exc)
            return
        except OmnividError as exc:
            # an error answer (400, 401, 402, 403...): the provider did not create a task
            self._refund(job)
            self.slots.release()
            self._end_not_submitted(job, exc)
            return
        # nothing awaits between the answer and these records: the task id cannot be lost
        now = anyio.current_time()
        if task.model is None:
            task = _with_model(task, job.request.model)
        job.task = task
        job.attempts += 1
        job.task_ids.append(task.id)
        job.submitted_at = now
        job.first_poll = True
        job.poll_failures = 0
        job.requeues = 0
        self._by_task[task.id] = job
        self._counts["submitted"] += 1
        if job.jkey is not None and self._journal is not None:
            self._journal.record_submitted(
                job.jkey, task, task_ids=job.task_ids, attempts=job.attempts
            )
        if self.options.max_cost is not None:
            reserve = reserved_after_submit(task, job.estimate)
            self._reserved += reserve - job.reserved
            job.reserved = reserve
        if self.options.deadline is not None:
            job.deadline_at = now + self.options.deadline * self.time_scale
        self._emit("submitted", job, task.id, attempt=job.attempts)
        if self._schedule_poll(job, now, inline=True):
            await self._poll(job)

    async def _reserve(self, job: _Job) -> bool:
        """Reserve the job's estimated cost; False (job ended) when the budget is reached."""
        limit = self.options.max_cost
        if limit is None:
            return True
        if job.reserved:
            return True
        job.estimate = estimate_cost(self.provider, job.request, self.options.cost_estimate)
        while True:
            if not self._budget_closed:
                if self._spent + self._reserved + job.estimate <= limit + 1e-9:
                    job.reserved = job.estimate
                    self._reserved += job.estimate
                    return True
                if self._reserved <= 1e-9 or self._spent + job.estimate > limit + 1e-9:
                    self._budget_closed = True
                    log.info(
                        "budget reached (spent %.4g + reserved %.4g of %.4g): no new submits",
                        self._spent,
                        self._reserved,
                        limit,
                    )
            if self._budget_closed:
                self.slots.release()
                error = BudgetExceededError(
                    f"not submitted: the budget max_cost={limit:g} is reached (spent "
                    f"{self._spent:.4g}, reserved {self._reserved:.4g}, this job needs about "
                    f"{job.estimate:.4g})",
                    provider=self.provider.name,
                    model=job.request.model,
                )
                if job.task is not None and job.task.is_terminal:
                    self._end_failed(job, job.task)  # a resubmission the budget forbids
                else:
                    self._end_not_submitted(job, error)
                return False
            await self._budget_changed.wait()

    def _refund(self, job: _Job) -> None:
        if job.reserved:
            self._reserved -= job.reserved
            job.reserved = 0.0
            self._budget_notify()

    def _settle(self, job: _Job, cost: float) -> None:
        """The job's current task ended costing ``cost``: move its reservation to spent."""
        job.cost += cost
        self._spent += cost
        if job.reserved:
            self._reserved -= job.reserved
            job.reserved = 0.0
        self._budget_notify()

    def _budget_notify(self) -> None:
        if self.options.max_cost is not None:
            self._budget_changed.set()
            self._budget_changed = anyio.Event()

    def _requeue(self, job: _Job, exc: OmnividError) -> None:
        """The provider provably did not take the submit (429, never sent): send it again."""
        job.requeues += 1
        if job.requeues > _MAX_REQUEUES:
            self.slots.release()
            self._end_not_submitted(job, exc)
            return
        now = anyio.current_time()
        wait = self.client.retry.backoff_wait(min(job.requeues, 8), self._rng)
        due = max(now + wait, self.client.gate.closed_until)
        reason = "rate_limited" if isinstance(exc, RateLimitError) else "not_sent"
        self._emit("retrying", job, None, reason=reason, delay=due - now, attempt=job.attempts + 1)
        job.phase = "backoff"
        self._push(due, _SUBMIT, job)

    def _on_ambiguous(self, job: _Job, exc: SubmissionUnknownError) -> None:
        """The submit may have been accepted: never resubmitted unless asked."""
        self._counts["ambiguous"] += 1
        job.ambiguous_count += 1
        if job.reserved:  # it may have been billed: the budget counts it as spent
            self._spent += job.reserved
            self._reserved -= job.reserved
            job.reserved = 0.0
            self._budget_notify()
        # the provider may be running it: its slot stays taken for a typical task's duration
        hold = self.options.ambiguous_hold
        hold_s = (job.typical if hold is None else hold) * self.time_scale
        self._push_release(anyio.current_time() + hold_s)
        policy = self.options.resubmit
        tries = job.attempts + job.ambiguous_count
        limit = policy.max_attempts if policy is not None else 2
        if self.options.resubmit_ambiguous and tries < limit:
            log.warning(
                "key %r: the submit may have been accepted (%s); resubmitting as asked "
                "(fingerprint %s)",
                job.key,
                type(exc.cause).__name__ if exc.cause else "unknown",
                job.fingerprint[:16],
            )
            self._emit("retrying", job, None, reason="ambiguous", attempt=tries + 1)
            job.phase = "backoff"
            self._tg_start(self._submit_with_new_slot, job)
            return
        if job.jkey is not None and self._journal is not None:
            self._journal.record_error(job.jkey, f"ambiguous submit: {exc}")
        self._end(job, error=exc, kind="ambiguous", detail={"fingerprint": job.fingerprint})

    async def _submit_with_new_slot(self, job: _Job) -> None:
        await self.slots.acquire()
        await self._submit(job)

    # -- polling -----------------------------------------------------------------------------
    def _schedule_poll(
        self, job: _Job, now: float, *, not_before: float | None = None, inline: bool = False
    ) -> bool:
        """Schedule the job's next poll; True (``inline`` only) when it is due already and
        the caller should poll at once in its own task instead of going through the heap."""
        task = job.task
        assert task is not None
        callbacks = getattr(self.client, "callbacks", None)
        if job.nudged or (callbacks is not None and callbacks.take_wake(task.id)):
            job.nudged = False
            delay = 0.0
        else:
            elapsed = now - job.submitted_at if job.submitted_at is not None else 0.0
            delay = self.client.poll.next_delay(
                task, elapsed, first=job.first_poll, default_estimate=job.typical
            )
        due = now + delay
        if not_before is not None and due < not_before:
            due = not_before
        if job.deadline_at is not None and not job.zombie:
            due = min(due, job.deadline_at)
        if inline and due <= anyio.current_time():
            job.phase = "polling"
            return True
        job.phase = "waiting"
        self._push(due, _POLL, job)
        return False

    def _resume(self, job: _Job) -> None:
        """Poll a task id recorded by an earlier run (it holds a slot)."""
        task_id = job.task_ids[-1]
        now = anyio.current_time()
        job.task = Task(id=task_id, provider=self.provider.name, model=job.request.model)
        job.submitted_at = now
        job.first_poll = False
        job.nudged = True  # poll at once: it may have finished long ago
        self._by_task[task_id] = job
        self._counts["resumed"] += 1
        if self.options.deadline is not None:
            job.deadline_at = now + self.options.deadline * self.time_scale
        if self.options.max_cost is not None:
            job.estimate = estimate_cost(self.provider, job.request, self.options.cost_estimate)
            job.reserved = job.estimate
            self._reserved += job.estimate
        self._emit("resumed", job, task_id, attempt=job.attempts)
        self._schedule_poll(job, now)

    async def _poll(self, job: _Job) -> None:
        """Poll the job's task, again at once while the next poll is due already."""
        while await self._poll_once(job):
            pass

    async def _poll_once(self, job: _Job) -> bool:
        task = job.task
        assert task is not None
        sent = anyio.current_time()
        try:
            latest = await self.client.transport.get_task(task.id, model=job.request.model)
        except (TransportError, RateLimitError, ServerError, NotFoundError) as exc:
            # transient (or not visible yet): try again later; the task id is never dropped
            job.poll_failures += 1
            limit = 3 if isinstance(exc, NotFoundError) else _MAX_POLL_FAILURES
            if job.poll_failures > limit:
                self._end_poll_error(job, exc)
                return False
            now = anyio.current_time()
            if job.deadline_at is not None and not job.zombie and now >= job.deadline_at:
                self._end_timeout(job)
                return False
            wait = self.client.retry.backoff_wait(min(job.poll_failures, 8), self._rng)
            due = max(now + wait, self.client.gate.closed_until)
            if job.deadline_at is not None and not job.zombie:
                due = min(due, job.deadline_at)
            job.phase = "waiting"
            self._push(due, _POLL, job)
            return False
        except OmnividError as exc:
            self._end_poll_error(job, exc)
            return False
        now = anyio.current_time()
        job.poll_failures = 0
        job.first_poll = False
        if latest.model is None:
            latest = _with_model(latest, job.request.model)
        changed = latest.status != task.status or latest.progress != task.progress
        if changed and not job.zombie:
            self._emit(
                "progress", job, latest.id, status=latest.status.value, progress=latest.progress
            )
        job.task = latest
        if latest.is_terminal:
            self._on_terminal(job, latest)
            return False
        if job.deadline_at is not None and now >= job.deadline_at and not job.zombie:
            self._end_timeout(job)
            return False
        # the provider read its progress between our send and its answer: time the
        # re-estimate from the middle of that span
        return self._schedule_poll(job, (sent + now) / 2, not_before=now, inline=True)

    def _on_terminal(self, job: _Job, task: Task) -> None:
        self._by_task.pop(task.id, None)
        cost = task_cost(task)
        self._settle(job, cost)
        if job.zombie:  # timed out earlier: its outcome is out; record, free the slot
            if job.jkey is not None and self._journal is not None:
                self._journal.record_finished(job.jkey, task, cost=job.cost)
            self.slots.release()
            return
        if task.status is TaskStatus.COMPLETED:
            if job.jkey is not None and self._journal is not None:
                self._journal.record_finished(job.jkey, task, cost=job.cost)
            self.slots.release()
            self._counts["completed"] += 1
            self._end(job, task=task, kind="completed", detail={"cost": job.cost})
            return
        kind = self.provider.classify_failure(task)
        policy = self.options.resubmit
        if policy is not None and policy.should_resubmit(task, kind, job.attempts):
            delay = policy.delay(job.attempts, self._rng) * self.time_scale
            self._counts["resubmits"] += 1
            self._emit(
                "retrying",
                job,
                task.id,
                reason=kind,
                delay=delay,
                attempt=job.attempts + 1,
                error=f"{task.error.code}: {task.error.message}" if task.error else None,
            )
            job.phase = "backoff"
            job.deadline_at = None
            self._push(anyio.current_time() + delay, _SUBMIT, job)
            return
        self.slots.release()
        self._end_failed(job, task)

    def _end_failed(self, job: _Job, task: Task) -> None:
        if job.jkey is not None and self._journal is not None:
            self._journal.record_finished(job.jkey, task, cost=job.cost)
        self._end(
            job,
            task=task,
            error=TaskFailedError(task),
            kind="failed",
            detail={"reason": self.provider.classify_failure(task)},
        )

    def _end_timeout(self, job: _Job) -> None:
        task = job.task
        assert task is not None
        waited = (
            (anyio.current_time() - job.submitted_at) / self.time_scale
            if job.submitted_at is not None
            else 0.0
        )
        error = TaskTimeoutError(
            f"task not finished {waited:.0f} s after its submit (deadline "
            f"{self.options.deadline} s); it is still running at the provider",
            task=task,
            provider=self.provider.name,
            model=job.request.model,
            task_id=task.id,
        )
        if job.jkey is not None and self._journal is not None:
            self._journal.record_error(job.jkey, str(error))
        self._end(job, task=task, error=error, kind="timeout")
        # keep the slot and keep polling quietly until the provider ends it
        job.zombie = True
        self._by_task[task.id] = job
        self._schedule_poll(job, anyio.current_time())

    def _end_poll_error(self, job: _Job, exc: OmnividError) -> None:
        task = job.task
        assert task is not None
        self._by_task.pop(task.id, None)
        self._refund(job)
        self.slots.release()
        if exc.task_id is None:
            exc.task_id = task.id
        if job.jkey is not None and self._journal is not None:
            self._journal.record_error(job.jkey, f"polling failed: {exc}")
        if job.zombie:
            return
        self._end(job, task=task, error=exc, kind="failed", detail={"reason": "poll"})

    # -- the poller --------------------------------------------------------------------------
    def _push(self, due: float, action: int, job: _Job) -> None:
        job.gen += 1
        heapq.heappush(self._heap, (due, next(self._seq), action, job, job.gen))
        if due < self._sleep_until:
            self._wake.set()

    def _push_release(self, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), _RELEASE, None, 0))
        if due < self._sleep_until:
            self._wake.set()

    async def _poller(self) -> None:
        heap = self._heap
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                _, _, action, job, gen = heapq.heappop(heap)
                if action == _RELEASE:
                    self.slots.release()
                elif gen != job.gen:
                    continue
                elif action == _POLL:
                    job.phase = "polling"
                    self._tg_start(self._poll, job)
                else:
                    self._tg_start(self._submit, job)
            timeout = heap[0][0] - now if heap else math.inf
            self._sleep_until = now + timeout
            if self._wake.is_set():
                self._wake = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._wake.wait()
            self._sleep_until = -math.inf

    def _on_nudge(self, task_id: str) -> bool:
        job = self._by_task.get(task_id)
        if job is None:
            return False
        if job.phase == "waiting":
            self._push(anyio.current_time(), _POLL, job)
        else:
            job.nudged = True
        return True

    def _tg_start(self, fn: Callable[[_Job], Awaitable[Any]], job: _Job) -> None:
        """Run ``fn(job)`` in a worker: an idle one if any, else a new one (workers are
        reused: spawning a task per step would cost more than most steps)."""
        self._ready.append((fn, job))
        if self._parked:
            self._parked.pop().set()
        else:
            assert self._tg is not None
            self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        ready, parked = self._ready, self._parked
        while True:
            while ready:
                fn, job = ready.popleft()
                await self._guard(fn, job)
            wake = anyio.Event()
            parked.append(wake)
            await wake.wait()

    async def _guard(self, fn: Callable[[_Job], Awaitable[Any]], job: _Job) -> None:
        """Run a job step; a bug in it ends that job with an error instead of the batch."""
        try:
            await fn(job)
        except Exception as exc:
            log.exception("internal error in a batch job (key %r)", job.key)
            if job.phase != "done":
                task_id = job.task.id if job.task is not None else None
                if task_id is not None:
                    self._by_task.pop(task_id, None)
                error = OmnividError(
                    f"internal error: {type(exc).__name__}: {exc}",
                    provider=self.provider.name,
                    model=job.request.model,
                    task_id=task_id,
                )
                self._end(job, task=job.task, error=error, kind="failed")

    # -- ending jobs -------------------------------------------------------------------------
    def _end_not_submitted(self, job: _Job, error: OmnividError, *, record: bool = True) -> None:
        if record and job.jkey is not None and self._journal is not None:
            self._journal.record_not_submitted(
                job.jkey,
                job.request,
                provider=self.provider.name,
                reason=str(error),
                fingerprint=job.fingerprint,
                run=self._run_id,
            )
        self._end(job, task=job.task, error=error, kind="not_submitted")

    def _end_from_journal(self, job: _Job, entry: JournalEntry) -> None:
        task = entry.to_task()
        error: OmnividError | None = None
        if task is not None and task.status is not TaskStatus.COMPLETED:
            error = TaskFailedError(task)
        self._counts["from_journal"] += 1
        self._end(job, task=task, error=error, kind="skipped", from_journal=True)

    def _end(
        self,
        job: _Job,
        *,
        task: Task | None = None,
        error: OmnividError | None = None,
        kind: EventKind,
        detail: dict[str, Any] | None = None,
        from_journal: bool = False,
    ) -> None:
        """Deliver the job's one outcome."""
        job.phase = "done"
        job.completed_at = anyio.current_time()
        self._live.pop(job.serial, None)
        if job.jkey is not None:
            self._live_keys.discard(job.jkey)
        if kind not in ("completed", "skipped"):
            self._counts["failed"] += 1
        outcome = Outcome(
            key=job.key,
            request=job.request,
            task=task,
            error=error,
            attempts=job.attempts,
            task_ids=tuple(job.task_ids),
            cost=job.cost,
            queued_at=job.queued_at,
            submitted_at=job.submitted_at,
            completed_at=job.completed_at,
            from_journal=from_journal,
            fingerprint=job.fp,
        )
        task_id = outcome.task_id
        info = dict(detail or {})
        if error is not None:
            info.setdefault("error", str(error))
        self._emit(kind, job, task_id, **info)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(outcome)
        if self._input_done and not self._live:
            self._idle.set()

    # -- events ------------------------------------------------------------------------------
    def _emit(self, kind: EventKind, job: _Job | None, task_id: str | None, **detail: Any) -> None:
        handler = self.options.on_event
        if handler is None and not self._subscribers:
            return
        event = Event(
            kind=kind,
            key=job.key if job is not None else None,
            task_id=task_id,
            detail=detail,
            at=anyio.current_time(),
        )
        if handler is not None:
            try:
                handler(event)
            except Exception:
                if not self._handler_failed:
                    self._handler_failed = True
                    log.exception("the batch's on_event handler raised; events go on")
        for stream in self._subscribers:
            stream.send_nowait(event)

    def _on_rate_limited(self, pause: float, retry_after: float | None) -> None:
        self._emit(
            "rate_limited",
            None,
            None,
            pause=pause,
            retry_after=retry_after,
            rate=self.client.gate.rate,
        )

    # -- the end -----------------------------------------------------------------------------
    def _http_now(self) -> Counter[str]:
        if self._http_end is not None:
            return self._http_end
        transport = self.client._transport
        return Counter(transport.counters) if transport is not None else Counter()

    def _finalize(self) -> None:
        self._http_end = self._http_now()
        running: list[_Job] = list(self._live.values())
        running += [j for j in self._by_task.values() if j.zombie]
        for job in running:
            if job.phase in ("waiting", "polling") and job.task is not None:
                self.abandoned[job.key] = job.task.id
                self._emit("abandoned", job, job.task.id)
            elif job.phase == "posting":  # its POST was cut off: the answer is unknown
                self.abandoned[job.key] = None
                self._emit("abandoned", job, None, fingerprint=job.fingerprint)
        if self.abandoned:
            ids = ", ".join(
                f"{k!r}: {v or 'submit unanswered'}" for k, v in list(self.abandoned.items())[:20]
            )
            more = len(self.abandoned) - 20
            log.warning(
                "batch stopped with %d task(s) submitted and not finished (still running at "
                "%s; the journal, if any, keeps them): %s%s",
                len(self.abandoned),
                self.provider.name,
                ids,
                f" and {more} more" if more > 0 else "",
            )
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsubscribe()
        self._unsubscribe.clear()
        self._send.close()
        for stream in self._subscribers:
            stream.close()
        self._subscribers.clear()
        self.done.set()


class _EventIterator:
    """Async iterator over one subscriber's events."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None

    def __del__(self) -> None:
        self._receive.close()


def _duplicate(jkey: str) -> JournalConflictError:
    return JournalConflictError(
        "key", jkey, "used by two jobs of the same batch; keys must be unique in a journal"
    )


def _with_model(task: Task, model: str) -> Task:
    import attrs

    return attrs.evolve(task, model=model)
