"""What a batch hands back: one :class:`Outcome` per job, :class:`Event` s while it runs, and
:class:`BatchStats` on demand.

Times in outcomes and events are ``anyio.current_time()`` values: seconds on the event loop's
monotonic clock (compare them with each other, not with wall time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import field, frozen

from .._models import FailureCause, Task, TaskStatus, VideoRequest
from ..errors import OmnividError, SubmissionUnknownError, TaskFailedError

__all__ = ["TERMINAL_EVENTS", "BatchStats", "Event", "EventKind", "Outcome"]

EventKind = Literal[
    "submitted",
    "resumed",
    "progress",
    "retrying",
    "rate_limited",
    "completed",
    "failed",
    "timeout",
    "ambiguous",
    "not_submitted",
    "skipped",
    "abandoned",
    "held",
    "lease_lost",
]
"""What happened:

* ``submitted``: a task was created (``task_id``; ``detail["attempt"]``).
* ``resumed``: a task id recorded by an earlier run is being polled again.
* ``progress``: the task's status or progress changed (``detail["status"]``, ``["progress"]``).
* ``retrying``: a failed task is resubmitted, or a submit the provider refused with 429 or
  never received is sent again (``detail["reason"]``, ``["delay"]``, ``["attempt"]``; for a
  submit never received, ``["error"]`` names the URL that could not be reached). Once per
  batch, at the first connection failure to an endpoint that never answered, a ``retrying``
  event with ``key`` None says so (``["reason"]`` ``not_reached``, ``["error"]`` naming the
  URL, ``["until"]``: the ``anyio.current_time()`` it is given up at).
* ``rate_limited``: the account got a 429 (``key`` None; ``detail["pause"]``,
  ``["retry_after"]``, ``["until"]``: the ``anyio.current_time()`` the account's gate reopens,
  ``["rate"]``).
* terminal, exactly one per job: ``completed``, ``failed`` (task failed or cancelled, or an
  error reading it), ``timeout`` (deadline passed; the task lives on), ``ambiguous`` (the
  submit may have been accepted), ``not_submitted`` (budget, invalid request, refused,
  journal conflict, submits stopped: see ``BatchStats.stopped``), ``skipped`` (finished in an
  earlier run, per the journal).
* ``abandoned``: the batch was cancelled while this job's task was running (``task_id``) or
  its submit was unanswered (``task_id`` None).
* ``held`` (a shared journal): another worker holds the job; this batch waits for its end
  (``detail["worker"]``), then delivers it from the journal, or takes the job over once that
  worker's lease runs out.
* ``lease_lost`` (a shared journal): another worker claimed a job this batch held (its lease
  ran out: this process stalled, or lost the database); this batch stops writing for it and
  waits for its end like a ``held`` job (``detail["worker"]``: this worker).
"""

TERMINAL_EVENTS: frozenset[str] = frozenset(
    {"completed", "failed", "timeout", "ambiguous", "not_submitted", "skipped"}
)


@frozen(kw_only=True)
class Event:
    """One thing that happened in a batch, for progress displays and logs."""

    kind: EventKind
    key: Any = None
    task_id: str | None = None
    detail: Mapping[str, Any] = field(factory=dict, converter=dict, hash=False)
    at: float = 0.0

    @property
    def terminal(self) -> bool:
        """True for the one event that ends a job."""
        return self.kind in TERMINAL_EVENTS


@frozen(kw_only=True)
class Outcome:
    """The end of one job: exactly one per input request, in completion order.

    ``key`` is the caller's key (or the request's index in the input); ``task`` the last task
    (terminal unless ``error`` says otherwise); ``error`` why the job did not complete, if it
    did not (``TaskFailedError``, ``TaskTimeoutError``, ``SubmissionUnknownError``,
    ``BudgetExceededError``, ``ValidationError``, ``JournalConflictError``, an ``APIError``...).
    ``attempts`` counts tasks created for the job (resubmissions included); ``task_ids`` lists
    them all, oldest first; ``cost`` sums what they cost (the provider's ``cost``, else its
    credits for a completed task; 0 when nothing was charged).

    ``queued_at``, ``submitted_at`` (last submit answered) and ``completed_at`` are
    ``anyio.current_time()`` seconds (None when the job never got there). ``from_journal`` is
    True when the job had finished in an earlier run, or (a shared journal) in another worker,
    and its result comes from the journal. ``worker`` (a shared journal only, else None) names
    the worker that ran the job: this one's name, or another's for a job from the journal.
    """

    key: Any
    request: VideoRequest
    task: Task | None = None
    error: OmnividError | None = field(default=None, eq=False)
    attempts: int = 0
    task_ids: tuple[str, ...] = ()
    cost: float = 0.0
    queued_at: float | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    from_journal: bool = False
    worker: str | None = None
    _fingerprint: str | None = field(default=None, alias="fingerprint", repr=False, eq=False)

    @property
    def fingerprint(self) -> str:
        """The request's fingerprint (``VideoRequest.fingerprint()``)."""
        return self._fingerprint or self.request.fingerprint()

    @property
    def ok(self) -> bool:
        """True when the task completed and nothing went wrong."""
        return (
            self.error is None
            and self.task is not None
            and self.task.status is TaskStatus.COMPLETED
        )

    @property
    def task_id(self) -> str | None:
        """The job's (last) task id, from the task or the error: never lost."""
        if self.task is not None:
            return self.task.id
        if self.error is not None and self.error.task_id:
            return self.error.task_id
        return self.task_ids[-1] if self.task_ids else None

    @property
    def kind(self) -> FailureCause | None:
        """Why the job's task failed, in one word (``TaskFailedError.kind``: quota, timeout,
        moderation, invalid, cancelled or unknown); None when no task of it failed (it
        completed, or ended without a failed task: budget, validation, ambiguous...)."""
        if isinstance(self.error, TaskFailedError):
            return self.error.kind
        return self.task.failure_kind if self.task is not None else None

    @property
    def ambiguous(self) -> bool:
        """True when a submit may have been accepted without omnivid learning its task id."""
        return isinstance(self.error, SubmissionUnknownError)

    @property
    def duration(self) -> float | None:
        """Seconds from the last submit's answer to the terminal state, if both are known."""
        if self.submitted_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.submitted_at

    def replace(self, **changes: Any) -> Outcome:
        """A copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)


@frozen(kw_only=True)
class BatchStats:
    """A snapshot of a batch's counters.

    Jobs: ``jobs`` taken from the input, ``submitted`` (tasks created, resubmissions included),
    ``resumed`` (task ids taken from the journal), ``in_flight`` (submitted, not terminal),
    ``completed``, ``failed`` (every other outcome: failed tasks, timeouts, ambiguous, not
    submitted), ``from_journal``, ``resubmits``.

    HTTP (the account's counters while the batch ran, so they include other work on the same
    client): ``requests`` (submits + polls), ``submits``, ``polls``, ``rate_limited`` (429s),
    ``retries`` (HTTP retries inside the transport), ``ambiguous``.
    ``polls_per_task`` = polls / tasks polled.

    Money, in the provider's billing unit (APIMart currency, EvoLink credits): ``cost_spent``
    by this batch's finished tasks (and its submits that may have been billed),
    ``cost_reserved`` for its submitted ones not finished yet. ``cost_spent_total`` and
    ``cost_reserved_total`` are what ``max_cost`` counts: with a journal they add what the
    journal recorded in earlier runs (finished tasks; submits unanswered or still running), so
    "spent ``cost_spent_total`` of cap ``max_cost``" holds over every run of the journal;
    without one they equal ``cost_spent`` and ``cost_reserved``.
    ``rate`` is the account's current request-rate limit (None: unlimited).

    ``stopped``: why submits stopped early, naming the cause (the account's key refused
    with 401, its balance exhausted with 402, a model it may not use with 403, or an endpoint
    no request ever reached), else None. The jobs not submitted because of it end
    ``not_submitted`` with an error of the same kind; running tasks are still polled.
    """

    jobs: int = 0
    submitted: int = 0
    resumed: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    from_journal: int = 0
    resubmits: int = 0
    requests: int = 0
    submits: int = 0
    polls: int = 0
    polls_per_task: float = 0.0
    rate_limited: int = 0
    retries: int = 0
    ambiguous: int = 0
    cost_spent: float = 0.0
    cost_reserved: float = 0.0
    cost_spent_total: float = 0.0
    cost_reserved_total: float = 0.0
    max_cost: float | None = None
    rate: float | None = None
    stopped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict form (for JSON and logs)."""
        return attrs.asdict(self)
