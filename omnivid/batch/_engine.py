"""The batch scheduler behind ``client.map`` and ``client.open_batch``.

One :class:`Engine` runs one batch inside a task group:

* the **feeder** (the engine's own task) pulls jobs from the input only when there is room:
  at most ``max_in_flight + prefetch`` jobs are held between being pulled and their outcome
  being received by the caller (the *window*), so a generator of a million requests runs in
  constant memory. Each job then waits for an in-flight *slot* (``max_in_flight``: tasks
  submitted and not known to be terminal) and is handed to a worker.
* the **poller** is one task owning a heap of due times (``(due, seq, action, job, gen)``; a
  job's older entries are dropped lazily by generation). Due polls go to workers, so a slow
  answer delays nobody else; there is no sleeping coroutine per task. Poll timing is
  ``client.poll.next_delay`` (server hint for the first poll, progress-based re-estimates
  after, jitter, caps); ``client.nudge(task_id)`` (a callback arrived) moves a task's next
  poll to now. A poll due at once (e.g. right after a submit) runs in the same worker.
* **workers** run job steps (submit, poll). They are reused (at most 256 idle ones are
  kept), because spawning a task per step would cost more than most steps.
* every request goes through the client's transport, hence through the account's
  :class:`~omnivid._http.gate.AccountGate` (shared 429 cooldown, adaptive rate limit).

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
sent again after a back-off (at most 20 times). Budget rules: :mod:`omnivid.batch._budget`.

Cancellation (leaving ``async with``, breaking the loop, an enclosing cancel scope) stops
feeding and polling at once; a submit whose POST is already on the wire is allowed to finish
(the transport shields it) so its task id is recorded, not lost. The ids of tasks left running
are in ``abandoned``, logged at WARNING, emitted as ``abandoned`` events and kept in the
journal, so a rerun resumes them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import uuid
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from attrs import evolve

from .._aio import clock as _clock
from .._http.retry import retry_hint
from .._http.transport import _NotSent
from .._models import Task, TaskStatus, VideoRequest
from ..errors import (
    BudgetExceededError,
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
from ..journal._sqlite import Journal, JournalEntry
from ._budget import Budget
from ._events import EventHub
from ._job import BatchOptions, Job
from ._journal_link import JournalLink, NoJournal
from ._limiter import Limiter
from ._outcome import BatchStats, Event, EventKind, Outcome
from ._policy import estimate_cost, reserved_after_submit, task_cost
from ._poller import POLL, RELEASE, SUBMIT, Schedule, Step, Workers

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = ["BatchOptions", "Engine", "Event", "Outcome"]

log = logging.getLogger("omnivid")


_MAX_REQUEUES = 20
_MAX_POLL_FAILURES = 30
_END = object()


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
        self.budget = Budget(options.max_cost)
        self.events = EventHub(options.on_event)
        self._journal: NoJournal = NoJournal()
        self._serial = itertools.count()
        self._schedule = Schedule(self._fire)
        self._workers: Workers | None = None
        self._scope: anyio.CancelScope | None = None
        self._live: dict[int, Job] = {}  # pulled, outcome not yet out
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
            cost_spent=self.budget.spent,
            cost_reserved=self.budget.reserved,
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
            self._cleanup.append(self.client.gate.subscribe(self._on_rate_limited))
            listeners: list[Callable[[str], bool]] = self.client._nudge_listeners
            listeners.append(self._on_nudge)
            self._cleanup.append(lambda: listeners.remove(self._on_nudge))
            async with anyio.create_task_group() as tg:
                self._workers = Workers(tg, self._guard)
                self._scope = tg.cancel_scope
                tg.start_soon(self._schedule.run)
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
        journal = j if isinstance(j, Journal) else Journal.open(j)
        self._journal = JournalLink(
            journal,
            provider=self.provider.name,
            run=uuid.uuid4().hex,
            resubmit_ambiguous=self.options.resubmit_ambiguous,
            owned=journal is not j,
        )

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
            match, found = self._journal.match(job)
            if match == "refuse":
                assert isinstance(found, OmnividError)
                self._end(job, error=found, kind="not_submitted")
                continue
            if match == "skip":
                assert isinstance(found, JournalEntry)
                self._end_from_journal(job, found)
                continue
            if match == "ambiguous":
                assert isinstance(found, OmnividError)
                self._counts["ambiguous"] += 1
                self._end(job, error=found, kind="ambiguous", detail={"fingerprint": job.fp})
                continue
            if not self.slots.try_acquire():
                await self.slots.acquire()
            if match == "resume":
                self._resume(job)
            else:
                self._dispatch(self._submit, job)

    def _make_job(self, item: Any, index: int) -> Job | None:
        key: Hashable
        if isinstance(item, VideoRequest):
            key, request = index, item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], VideoRequest):
            key, request = item
        else:
            self.failure = ValidationError(
                f"requests[{index}]", item, "expected a VideoRequest or a (key, VideoRequest) pair"
            )
            return None
        job = Job(next(self._serial), key, request, _clock.now())
        spec = self.provider.models.get(request.model)
        if spec is not None:
            job.typical = spec.typical_seconds
        return job

    # -- submitting --------------------------------------------------------------------------
    async def _submit(self, job: Job) -> None:
        """Submit ``job`` (it holds a slot); ends with the job polled, requeued or ended."""
        job.phase = "submitting"
        if not job.reserved:
            job.estimate = estimate_cost(self.provider, job.request, self.options.cost_estimate)
            if not await self.budget.reserve(job.estimate):
                self.slots.release()
                if job.task is not None and job.task.is_terminal:
                    self._end_failed(job, job.task)  # a resubmission the budget forbids
                else:
                    message = self.budget.describe(job.estimate)
                    self._end_not_submitted(
                        job,
                        BudgetExceededError(
                            message, provider=self.provider.name, model=job.request.model
                        ),
                    )
                return
            job.reserved = job.estimate
        if job.body is None:
            try:
                job.body = self.client.build_body(job.request)
            except ValidationError as exc:
                self._release_reservation(job)
                self.slots.release()
                self._end_not_submitted(job, exc)
                return
        job.phase = "posting"  # from here a cancelled job's intent may be in the journal
        conflict = await self._journal.intent(job)
        if conflict is not None:
            self._release_reservation(job)
            self.slots.release()
            self._end(job, error=conflict, kind="not_submitted")
            return
        try:
            task = await self.client.submit(job.request, body=job.body)
        except SubmissionUnknownError as exc:
            self._on_ambiguous(job, exc)
            return
        except (RateLimitError, _NotSent) as exc:
            self._release_reservation(job)
            self._requeue(job, exc)
            return
        except OmnividError as exc:
            # an error answer (400, 401, 402, 403...): the provider did not create a task
            self._release_reservation(job)
            self.slots.release()
            self._end_not_submitted(job, exc)
            return
        # the task id is in memory before anything awaits (a cancelled batch reports it), and
        # in the journal before the job goes on (group-committed: see _group_commit)
        job.phase = "recording"
        now = _clock.now()
        self.client._submitted_at.pop(task.id, None)  # (kept for `watch`; a batch has its own)
        if task.model is None:
            task = evolve(task, model=job.request.model)
        job.task = task
        job.attempts += 1
        job.task_ids.append(task.id)
        job.submitted_at = now
        job.first_poll = True
        job.poll_failures = 0
        job.requeues = 0
        self._by_task[task.id] = job
        self._counts["submitted"] += 1
        reserve = reserved_after_submit(task, job.estimate)
        self.budget.adjust(job.reserved, reserve)
        job.reserved = reserve
        if self.options.deadline is not None:
            job.deadline_at = now + self.options.deadline * self.time_scale
        await self._journal.submitted(job, task)
        self.events.emit("submitted", job.key, task.id, attempt=job.attempts)
        if self._schedule_poll(job, now, inline=True):
            await self._poll(job)

    def _release_reservation(self, job: Job) -> None:
        if job.reserved:
            self.budget.release(job.reserved)
            job.reserved = 0.0

    def _requeue(self, job: Job, exc: OmnividError) -> None:
        """The provider provably did not take the submit (429, never sent): send it again."""
        job.requeues += 1
        if job.requeues > _MAX_REQUEUES:
            self.slots.release()
            self._end_not_submitted(job, exc)
            return
        now = _clock.now()
        wait = self.client.retry.backoff_wait(min(job.requeues, 8), self._rng)
        due = max(now + wait, self.client.gate.closed_until)
        reason = "rate_limited" if isinstance(exc, RateLimitError) else "not_sent"
        self.events.emit(
            "retrying", job.key, None, reason=reason, delay=due - now, attempt=job.attempts + 1
        )
        job.phase = "backoff"
        self._schedule.push(due, SUBMIT, job)

    def _on_ambiguous(self, job: Job, exc: SubmissionUnknownError) -> None:
        """The submit may have been accepted: never resubmitted unless asked."""
        self._counts["ambiguous"] += 1
        job.ambiguous_count += 1
        if job.reserved:  # it may be billed: the budget counts it as spent
            self.budget.settle(job.reserved, job.reserved)
            job.reserved = 0.0
        # the provider may be running it: its slot stays taken for a typical task's duration
        hold = self.options.ambiguous_hold
        self._schedule.push_release(
            _clock.now() + (job.typical if hold is None else hold) * self.time_scale
        )
        policy = self.options.resubmit
        tries = job.attempts + job.ambiguous_count
        if self.options.resubmit_ambiguous and tries < (policy.max_attempts if policy else 2):
            log.warning(
                "key %r: the submit may have been accepted (%s); resubmitting as asked "
                "(fingerprint %s)",
                job.key,
                type(exc.cause).__name__ if exc.cause else "unknown",
                job.fingerprint[:16],
            )
            self.events.emit("retrying", job.key, None, reason="ambiguous", attempt=tries + 1)
            job.phase = "backoff"
            self._dispatch(self._submit_with_new_slot, job)
            return
        self._journal.note(job, f"ambiguous submit: {exc}")
        self._end(job, error=exc, kind="ambiguous", detail={"fingerprint": job.fingerprint})

    async def _submit_with_new_slot(self, job: Job) -> None:
        await self.slots.acquire()
        await self._submit(job)

    # -- polling -----------------------------------------------------------------------------
    def _schedule_poll(
        self, job: Job, now: float, *, not_before: float | None = None, inline: bool = False
    ) -> bool:
        """Schedule the job's next poll; True (``inline`` only) when it is due already and
        the caller should poll at once in its own worker instead of going through the heap."""
        task = job.task
        assert task is not None
        callbacks = self.client.callbacks
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
        if inline and due <= _clock.now():
            job.phase = "polling"
            return True
        job.phase = "waiting"
        self._schedule.push(due, POLL, job)
        return False

    def _resume(self, job: Job) -> None:
        """Poll a task id recorded by an earlier run (it holds a slot)."""
        task_id = job.task_ids[-1]
        now = _clock.now()
        job.task = Task(id=task_id, provider=self.provider.name, model=job.request.model)
        job.submitted_at = now
        job.first_poll = False
        job.nudged = True  # poll at once: it may have finished long ago
        self._by_task[task_id] = job
        self._counts["resumed"] += 1
        if self.options.deadline is not None:
            job.deadline_at = now + self.options.deadline * self.time_scale
        job.estimate = estimate_cost(self.provider, job.request, self.options.cost_estimate)
        job.reserved = job.estimate
        self.budget.adjust(0.0, job.estimate)
        self.events.emit("resumed", job.key, task_id, attempt=job.attempts)
        self._schedule_poll(job, now)

    async def _poll(self, job: Job) -> None:
        """Poll the job's task, again at once while the next poll is due already."""
        while await self._poll_once(job):
            pass

    async def _poll_once(self, job: Job) -> bool:
        task = job.task
        assert task is not None
        sent = _clock.now()
        try:
            latest, body = await self.client.transport.read_task(task.id, model=job.request.model)
        except (TransportError, RateLimitError, ServerError, NotFoundError) as exc:
            self._poll_failed(job, exc)
            return False
        except OmnividError as exc:
            self._end_poll_error(job, exc)
            return False
        now = _clock.now()
        job.poll_failures = 0
        job.first_poll = False
        if latest.model is None:
            latest = evolve(latest, model=job.request.model)
        changed = latest.status != task.status or latest.progress != task.progress
        if changed and not job.zombie:
            self.events.emit(
                "progress", job.key, latest.id, status=latest.status.value, progress=latest.progress
            )
        job.task = latest
        if latest.is_terminal:
            self._on_terminal(job, latest, body)
            return False
        if job.deadline_at is not None and now >= job.deadline_at and not job.zombie:
            self._end_timeout(job)
            return False
        # the provider read its progress between our send and its answer: time the
        # re-estimate from the middle of that span
        return self._schedule_poll(job, (sent + now) / 2, not_before=now, inline=True)

    def _poll_failed(self, job: Job, exc: OmnividError) -> None:
        """A transient poll failure (or a task not visible yet): try again later; the task id
        is never dropped before the failures are many."""
        job.poll_failures += 1
        limit = 3 if isinstance(exc, NotFoundError) else _MAX_POLL_FAILURES
        if job.poll_failures > limit:
            self._end_poll_error(job, exc)
            return
        now = _clock.now()
        if job.deadline_at is not None and not job.zombie and now >= job.deadline_at:
            self._end_timeout(job)
            return
        retry = self.client.retry
        wait = retry.backoff_wait(min(job.poll_failures, 8), self._rng)
        hint = retry_hint(exc)
        if hint is not None:  # a 5xx's Retry-After (a 429's closed the gate already)
            wait = max(wait, retry.hint_wait(hint, self._rng))
        due = max(now + wait, self.client.gate.closed_until)
        if job.deadline_at is not None and not job.zombie:
            due = min(due, job.deadline_at)
        job.phase = "waiting"
        self._schedule.push(due, POLL, job)

    def _on_terminal(self, job: Job, task: Task, body: str) -> None:
        """A terminal task (``body``: the response text it was read from, for the journal)."""
        self._by_task.pop(task.id, None)
        cost = task_cost(task)
        job.cost += cost
        self.budget.settle(job.reserved, cost)
        job.reserved = 0.0
        if job.zombie:  # timed out earlier: its outcome is out; record, free the slot
            self._journal.finished(job, task, body)
            self.slots.release()
            return
        if task.status is TaskStatus.COMPLETED:
            self._journal.finished(job, task, body)
            self.slots.release()
            self._counts["completed"] += 1
            self._end(job, task=task, kind="completed", detail={"cost": job.cost})
            return
        kind = self.provider.classify_failure(task)
        policy = self.options.resubmit
        if policy is not None and policy.should_resubmit(task, kind, job.attempts):
            delay = policy.delay(job.attempts, self._rng) * self.time_scale
            self._counts["resubmits"] += 1
            self.events.emit(
                "retrying",
                job.key,
                task.id,
                reason=kind,
                delay=delay,
                attempt=job.attempts + 1,
                error=f"{task.error.code}: {task.error.message}" if task.error else None,
            )
            job.phase = "backoff"
            job.deadline_at = None
            self._schedule.push(_clock.now() + delay, SUBMIT, job)
            return
        self.slots.release()
        self._end_failed(job, task, body)

    # -- the poller and the workers ----------------------------------------------------------
    def _fire(self, action: int, job: Job | None) -> None:
        """A schedule entry fell due."""
        if action == RELEASE:
            self.slots.release()
        elif job is not None and action == POLL:
            job.phase = "polling"
            self._dispatch(self._poll, job)
        elif job is not None:
            self._dispatch(self._submit, job)

    def _on_nudge(self, task_id: str) -> bool:
        job = self._by_task.get(task_id)
        if job is None:
            return False
        if job.phase == "waiting":
            self._schedule.push(_clock.now(), POLL, job)
        else:
            job.nudged = True
        return True

    def _dispatch(self, step: Step, job: Job) -> None:
        assert self._workers is not None
        self._workers.dispatch(step, job)

    async def _guard(self, step: Step, job: Job) -> None:
        """Run a job step; a bug in it ends that job with an error instead of the batch."""
        try:
            await step(job)
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
    def _end_failed(self, job: Job, task: Task, body: str | None = None) -> None:
        self._journal.finished(job, task, body)
        reason = self.provider.classify_failure(task)
        self._end(
            job, task=task, error=TaskFailedError(task), kind="failed", detail={"reason": reason}
        )

    def _end_timeout(self, job: Job) -> None:
        task = job.task
        assert task is not None and job.submitted_at is not None
        waited = (_clock.now() - job.submitted_at) / self.time_scale
        error = TaskTimeoutError(
            f"task not finished {waited:.0f} s after its submit (deadline "
            f"{self.options.deadline} s); it is still running at the provider",
            task=task,
            provider=self.provider.name,
            model=job.request.model,
            task_id=task.id,
        )
        self._journal.note(job, str(error))
        self._end(job, task=task, error=error, kind="timeout")
        # keep the slot and keep polling quietly until the provider ends it
        job.zombie = True
        self._by_task[task.id] = job
        self._schedule_poll(job, _clock.now())

    def _end_poll_error(self, job: Job, exc: OmnividError) -> None:
        task = job.task
        assert task is not None
        self._by_task.pop(task.id, None)
        self._release_reservation(job)
        self.slots.release()
        if exc.task_id is None:
            exc.task_id = task.id
        self._journal.note(job, f"polling failed: {exc}")
        if not job.zombie:
            self._end(job, task=task, error=exc, kind="failed", detail={"reason": "poll"})

    def _end_not_submitted(self, job: Job, error: OmnividError) -> None:
        self._journal.not_submitted(job, str(error))
        self._end(job, task=job.task, error=error, kind="not_submitted")

    def _end_from_journal(self, job: Job, entry: JournalEntry) -> None:
        task = entry.to_task()
        error: OmnividError | None = None
        if task is not None and task.status is not TaskStatus.COMPLETED:
            error = TaskFailedError(task)
        self._counts["from_journal"] += 1
        self._end(job, task=task, error=error, kind="skipped", from_journal=True)

    def _end(
        self,
        job: Job,
        *,
        task: Task | None = None,
        error: OmnividError | None = None,
        kind: EventKind,
        detail: dict[str, Any] | None = None,
        from_journal: bool = False,
    ) -> None:
        """Deliver the job's one outcome."""
        job.phase = "done"
        job.completed_at = _clock.now()
        self._live.pop(job.serial, None)
        self._journal.done(job)
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
        if self.events.active:
            info = dict(detail or {})
            if error is not None:
                info.setdefault("error", str(error))
            self.events.emit(kind, job.key, outcome.task_id, **info)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(outcome)
        if self._input_done and not self._live:
            self._idle.set()

    def _on_rate_limited(self, pause: float, retry_after: float | None) -> None:
        gate = self.client.gate
        self.events.emit(
            "rate_limited",
            None,
            None,
            pause=pause,
            retry_after=retry_after,
            until=gate.closed_until,
            rate=gate.rate,
        )

    # -- the end -----------------------------------------------------------------------------
    def _http_now(self) -> Counter[str]:
        if self._http_end is not None:
            return self._http_end
        transport = self.client._transport
        return Counter(transport.counters) if transport is not None else Counter()

    def _finalize(self) -> None:
        self._http_end = self._http_now()
        running = list(self._live.values()) + [j for j in self._by_task.values() if j.zombie]
        for job in running:
            if job.phase in ("recording", "waiting", "polling") and job.task is not None:
                self.abandoned[job.key] = job.task.id
                self.events.emit("abandoned", job.key, job.task.id)
            elif job.phase == "posting":  # its POST was cut off: the answer is unknown
                self.abandoned[job.key] = None
                self.events.emit("abandoned", job.key, None, fingerprint=job.fingerprint)
        if self.abandoned:
            shown = list(self.abandoned.items())[:20]
            more = len(self.abandoned) - len(shown)
            log.warning(
                "batch stopped with %d task(s) submitted and not finished (still running at "
                "%s; the journal, if any, keeps them): %s%s",
                len(self.abandoned),
                self.provider.name,
                ", ".join(f"{k!r}: {v or 'submit unanswered'}" for k, v in shown),
                f" and {more} more" if more > 0 else "",
            )
        for cleanup in self._cleanup:
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanup.clear()
        self._journal.close()
        self._send.close()
        self.events.close()
        self.done.set()
