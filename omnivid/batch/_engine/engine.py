"""The batch engine behind ``client.map`` and ``client.open_batch``.

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
sent again after a back-off (at most 20 times; an endpoint that never answered is given up on
about 30 provider seconds after its first failure). A 401, 402 or 403 answer to a submit stops
further submits (:mod:`.submit`). Budget rules: :mod:`omnivid.batch._budget`.

Cancellation (leaving ``async with``, breaking the loop, an enclosing cancel scope) stops
feeding and polling at once; a submit whose POST is already on the wire is allowed to finish
(the transport shields it) so its task id is recorded, not lost. The ids of tasks left running
are in ``abandoned``, logged at WARNING, emitted as ``abandoned`` events and kept in the
journal, so a rerun resumes them.

A job's state machine (``Job.phase``), written down once, here. In brackets, the part that
makes each move (:mod:`.feed`, :mod:`.submit`, :mod:`.poll`, :mod:`.end`)::

    queued ──[feed: journal says skip / ambiguous / refuse]──────────────────> done
      │
      ├──[feed: journal says resume, a task id recorded]──────────────┐
      v                                                               │
    submitting ──[submit: budget refused, invalid body]──────────────────────> done
      │                                                               │
      v                                                               │
    posting ──[submit: answer unknown, may be billed]────────────────────────> done
      │  └──[submit: 429 or never sent]──> backoff ──[schedule]──> submitting
      v                                                               │
    recording (task id known, committed to the journal)               │
      │                                                               │
      v                                                               v
    waiting <──[poll: not terminal; a nudge moves it up]──> polling
                                                              │
      ┌──[poll: failed, the resubmit policy says again]───────┤
      v                                                       │
    backoff ──[schedule]──> submitting                        └──[poll: terminal, timeout]──> done

    done: the one outcome is out (completed, failed, timeout, not_submitted, ambiguous,
    skipped), delivered by :mod:`.end`.

``posting``: the POST may be on the wire (its answer decides whether a task exists; a
cancelled batch reports it as abandoned with no task id). ``recording``: the task id is known
and being committed to the journal. ``waiting``: the task sits in the schedule for its next
poll. A *zombie* has its outcome out already (its deadline passed) while its task still runs:
it keeps its slot and is polled quietly until the provider ends it.

The parts, one module each, each a class the next one extends:

* :mod:`.state`: what they share (settings, slots, window, budget, journal link, schedule);
* :mod:`.end`: delivering a job's one outcome and the records that go with it;
* :mod:`.poll`: poll timing, reacting to answers, terminal tasks, deadlines, nudges;
* :mod:`.submit`: budget reservation, the journal's intent and task id, requeues, ambiguity;
* :mod:`.feed`: pulling jobs into the window and matching them with the journal;
* :mod:`.engine` (here): running the batch, its statistics, and its end.

The engine sees the client through :class:`~omnivid.batch._client.BatchClient` and the journal
through :class:`~omnivid.journal.JournalBackend` (by way of
:class:`~omnivid.batch._journal_link.JournalLink`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.abc

from ...errors import (
    ConfigurationError,
    OmnividError,
    ValidationError,
)
from ...journal import RateMemory, SharedJournal, connect_journal
from .._client import BatchClient
from .._job import BatchOptions, Job
from .._journal_link import JournalLink
from .._outcome import BatchStats
from .._poller import POLL, RELEASE, Schedule, Step, Workers
from .._shared_budget import SharedBudget
from .._shared_link import SharedLink
from .feed import Feeding

log = logging.getLogger("omnivid")
_CLOSE_TIMEOUT = 60.0  # seconds the journal's last commit may take when the batch ends

__all__ = ["Engine"]


class Engine(Feeding):
    """Runs one batch; see the module docstring. Used through ``Batch`` / ``MapRun``."""

    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        super().__init__(client, options)
        self._schedule = Schedule(self._fire)

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
            cost_spent_total=self.budget.total_spent,
            cost_reserved_total=self.budget.total_reserved,
            max_cost=self.budget.limit,
            rate=self.client.gate.rate,
            stopped=self.stopped,
        )

    async def run(self, source: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Run the batch over ``source`` until every job has its outcome (or cancellation)."""
        if self._started:
            raise RuntimeError("a batch runs once")
        self._started = True
        iterator: Iterator[Any] | AsyncIterator[Any]
        iterator = aiter(source) if isinstance(source, AsyncIterable) else iter(source)
        try:
            self._http_start = Counter(self.client.transport.counters)
            await self._open_journal()
            self._cleanup.append(self.client.gate.subscribe(self._on_rate_limited))
            self._cleanup.append(self.client.transport.subscribe(self._on_not_sent))
            listeners: list[Callable[[str], bool]] = self.client._nudge_listeners
            listeners.append(self._on_nudge)
            self._cleanup.append(lambda: listeners.remove(self._on_nudge))
            async with anyio.create_task_group() as tg:
                self._workers = Workers(tg, self._guard)
                self._scope = tg.cancel_scope
                tg.start_soon(self._schedule.run)
                if self._journal.shared:
                    self._start_sharing(tg)
                    if isinstance(self.budget, SharedBudget):
                        tg.start_soon(self.budget.run)
                await self._feed(iterator)
                self._input_done = True
                if self._live:
                    await self._idle.wait()
                tg.cancel_scope.cancel()
        except Exception as exc:  # a bug or a broken journal: surface it to the consumer
            self.failure = self.failure or exc
        finally:
            await self._close_journal()
            self._finalize()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    async def _open_journal(self) -> None:
        j, batch = self.options.journal, self.options.batch
        if j is None:
            if batch is not None:
                raise ConfigurationError(
                    f"batch={batch!r} names a batch of a shared journal: pass "
                    "journal='postgresql://...' too"
                )
            return
        journal, owned = await connect_journal(j, batch=batch)
        if isinstance(journal, SharedJournal):
            await self._open_shared(journal, owned)
            return
        self._journal = JournalLink(
            journal,
            provider=self.provider.name,
            run=uuid.uuid4().hex,
            resubmit_ambiguous=self.options.resubmit_ambiguous,
            owned=owned,
        )
        # the cap covers every run of the journal: count what the earlier ones spent and hold
        spending = self._journal.spending()
        self.budget.load(spending.spent, spending.reserved)
        if isinstance(journal, RateMemory):  # start from the rate an earlier run learnt
            rate = journal.learned_rate(self.client.account)
            if rate is not None and rate > 0:
                self.client.gate.resume_from(rate)

    async def _open_shared(self, journal: SharedJournal, owned: bool) -> None:
        """A journal many workers share: claims, one budget per batch (see :mod:`.shared`)."""
        name = getattr(journal, "batch", None)
        if self.options.batch is not None and name is not None and name != self.options.batch:
            if owned:
                await journal.aclose()
            raise ConfigurationError(
                f"batch={self.options.batch!r}, but the journal passed is batch {name!r}"
            )
        self._journal = SharedLink(
            journal,
            provider=self.provider.name,
            run=uuid.uuid4().hex,
            resubmit_ambiguous=self.options.resubmit_ambiguous,
            owned=owned,
        )
        budget = SharedBudget(self.options.max_cost, journal)
        await budget.start()
        self.budget = budget
        gate = self.client.gate
        if gate.shared is None:  # one rate limit per account over every worker
            self._cleanup.append(gate.share(journal.gate_state(), self.client.account))

    async def _close_journal(self) -> None:
        """Commit the journal's last records (and close it if the batch opened it): awaited,
        so that once the outcomes end, what they say is in the journal."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
            try:
                if isinstance(self.budget, SharedBudget):
                    await self.budget.drain()
                pacing = self.client.gate.shared
                if pacing is not None and self._journal.shared:
                    await pacing.aclose()
            except Exception as exc:
                log.warning("the batch's last budget records were not committed: %s", exc)
            journal = getattr(self._journal, "journal", None)
            learned = self.client.gate.learned_rate
            if isinstance(journal, RateMemory) and learned is not None:
                with contextlib.suppress(Exception):  # a memory, not a record: never fail here
                    journal.remember_rate(self.client.account, learned)
            try:
                await self._journal.aclose()
            except Exception as exc:  # lost records cost a poll on a rerun, never a submit
                log.warning("the journal's last records were not committed: %s", exc)

    def _fire(self, action: int, job: Job | None) -> None:
        """A schedule entry fell due."""
        if action == RELEASE:
            self.slots.release()
        elif job is not None and action == POLL:
            job.phase = "polling"
            self._dispatch(self._poll, job)
        elif job is not None:
            self._dispatch(self._submit, job)

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

    def _on_not_sent(self, error: OmnividError) -> None:
        """A connection failed: the first time while the endpoint was never reached, say it
        (its submits are retried until the deadline; a job's own requeues say it too)."""
        deadline = self.client.transport.unreachable_deadline()
        if deadline is None or self._told_not_reached:
            return
        self._told_not_reached = True
        self.events.emit(
            "retrying", None, None, reason="not_reached", error=str(error), until=deadline
        )

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
        self._send.close()
        self.events.close()
        self.done.set()
