"""The journal's seam: what a batch needs from a journal (:class:`JournalBackend`), and the
entry a journal keeps per job (:class:`JournalEntry`).

A journal keeps one entry per job key. Its ``state`` moves::

    intent ──> submitted ──> completed | failed | cancelled
      │  ^          │
      │  └──────────┘ (a failed task resubmitted: a new intent, the old task id kept)
      └──> not_submitted   (never reached the provider: budget, invalid, refused)

The batch engine talks to a journal only through :class:`JournalBackend` (by way of
``omnivid.batch._journal_link``): the SQLite journal (:mod:`._sqlite`) is one implementation;
another backend implements the same methods and needs no change in ``omnivid.batch``.

Money. Each intent and task id is recorded with the cost the batch reserved for it
(``reserved``), so a budget (``max_cost``) holds over every run of a journal, killed ones
included. What a journal counts for a provider (:meth:`JournalBackend.spending`):

* **spent**: the ``cost`` of every entry (a finished task's cost);
* **reserved**: the ``reserved`` of every entry in ``intent`` (its submit may have been
  accepted: possibly billed) or ``submitted`` (its task runs and will be billed); the other
  states reserve nothing.

A batch reads those totals when it starts and counts them against its cap; a job it resumes
takes over its entry's reservation instead of adding one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from attrs import frozen

from .._models import Task, VideoRequest, converter
from ..errors import JournalConflictError
from ..providers import get_provider

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "Claim",
    "ClaimStatus",
    "JobRow",
    "JournalBackend",
    "JournalEntry",
    "JournalState",
    "LeaseLostError",
    "RateMemory",
    "SharedJournal",
    "Spending",
    "TaskForm",
]

JournalState = Literal["intent", "submitted", "completed", "failed", "cancelled", "not_submitted"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
OPEN_STATES: frozenset[str] = frozenset({"intent", "submitted"})
"""The states whose ``reserved`` cost counts against a budget (see the module docstring)."""
TaskForm = Literal["body", "provider", "omnivid"]


@frozen(kw_only=True)
class JournalEntry:
    """One job as the journal knows it; times are unix seconds.

    ``reserved`` is the cost reserved for the job's open submit (recorded with the intent and
    the task id; it counts while the entry is ``intent`` or ``submitted``), None when unknown
    (an entry written before journals recorded it).

    ``request`` is ``VideoRequest.to_dict()``; ``task`` is the finished task's JSON in the form
    ``task_form`` says: ``'body'``, the provider's whole task-status response; ``'provider'``,
    the provider's task object (``Task.raw``); or ``'omnivid'``, the cattrs form of ``Task``.
    :meth:`to_task` reads each."""

    key: str
    fingerprint: str
    provider: str
    model: str
    request: Mapping[str, Any]
    state: JournalState
    task_id: str | None
    task_ids: tuple[str, ...]
    attempts: int
    status: str | None
    cost: float | None
    task: Mapping[str, Any] | None
    task_form: TaskForm | None
    error: str | None
    downloads: tuple[Path, ...]
    run: str | None
    created_at: float
    updated_at: float
    reserved: float | None = None

    @property
    def terminal(self) -> bool:
        """True when the job's task finished (completed, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    @property
    def ambiguous(self) -> bool:
        """True when a submit was intended but its answer never recorded."""
        return self.state == "intent"

    def video_request(self) -> VideoRequest:
        """The recorded request as a ``VideoRequest``."""
        return VideoRequest.from_dict(self.request)

    def to_task(self) -> Task | None:
        """The recorded task as a ``Task`` (None before it finished).

        A task kept in the provider's form is parsed again by that provider's adapter, which
        must be registered (``ConfigurationError`` if not)."""
        if self.task is None:
            return None
        if self.task_form == "omnivid" or self.task_form is None:
            return converter.structure(dict(self.task), Task)
        adapter = get_provider(self.provider)
        if self.task_form == "body":
            return adapter.parse_task(self.task, model=self.model)
        return adapter.task_from_raw(self.task, model=self.model)


@frozen
class Spending:
    """What a journal counts against a provider's budget (see the module docstring): ``spent``
    by finished tasks, ``reserved`` by open entries (intent or submitted)."""

    spent: float = 0.0
    reserved: float = 0.0


@runtime_checkable
class JournalBackend(Protocol):
    """What a batch needs from a journal.

    The two records that must be durable before the batch goes on are awaited:
    :meth:`write_intent` before a submit's POST and :meth:`write_submitted` right after it.
    A terminal task, an error note and a job that never reached the provider are recorded
    without waiting (a backend may hold them until its next commit, :meth:`flush` or
    :meth:`close`: losing one costs a poll on a rerun, never a submit).
    """

    @property
    def closed(self) -> bool:
        """True once closed."""
        ...

    def keys(self) -> set[str]:
        """Every key with an entry (read when a batch starts)."""
        ...

    def get(self, key: str | int) -> JournalEntry | None:
        """The entry for ``key`` (found when resuming), or None."""
        ...

    async def write_intent(
        self,
        key: str,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str,
        run: str,
        new: bool,
        request_json: str | None = None,
        reserved: float = 0.0,
    ) -> bool:
        """Commit the intent to submit ``request`` under ``key``, before the POST, with the
        cost ``reserved`` for it (counted while the entry stays ``intent``).

        With ``new=True`` the key must have no entry yet: False (nothing written, a conflict
        to report) when another job holds it."""
        ...

    async def write_submitted(
        self,
        key: str,
        task: Task,
        *,
        task_ids: list[str],
        attempts: int,
        reserved: float | None = None,
    ) -> None:
        """Commit the task id a submit returned, right after the POST, and the cost now
        ``reserved`` for its task (None: keep the intent's)."""
        ...

    def spending(self, provider: str) -> Spending:
        """The committed spend and open reservations of ``provider``'s entries (read when a
        batch with a journal starts; see the module docstring)."""
        ...

    def record_finished(
        self, key: str | int, task: Task, *, cost: float, body: str | None = None
    ) -> None:
        """Record a terminal task and what the job cost."""
        ...

    def record_error(self, key: str | int, message: str) -> None:
        """Note an error on the entry without changing its state."""
        ...

    def record_not_submitted(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        reason: str,
        fingerprint: str | None = None,
        run: str | None = None,
    ) -> None:
        """Record that the job never reached the provider (a rerun may submit it)."""
        ...

    def flush(self) -> None:
        """Commit what is pending."""
        ...

    def close(self) -> None:
        """Commit what is pending and close (idempotent)."""
        ...


# -- a journal shared by many workers -------------------------------------------------------


@frozen(kw_only=True)
class JobRow:
    """A job's row in a shared journal: its journal entry and its claim.

    ``worker`` holds (or last held) the job, ``token`` is its fencing token, ``lease_until``
    the lease's end (unix seconds, the database's clock; None when released), ``live`` whether
    the lease was live when read; ``queued``: added (or claimed) but never written to, its
    entry reads ``not_submitted`` without an error; ``held`` and ``charged``: the job's open
    budget reservation and the cost counted as spent."""

    entry: JournalEntry
    worker: str | None
    token: int
    lease_until: float | None
    live: bool
    queued: bool
    held: float
    charged: float

    @property
    def key(self) -> str:
        """The job's key."""
        return self.entry.key


ClaimStatus = Literal["claimed", "held", "done", "ambiguous", "conflict"]


class LeaseLostError(JournalConflictError):
    """A write for a job this worker no longer holds: another worker claimed it since (its
    fencing token moved on), so the write was refused."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__("key", key, f"lease lost: {detail}")
        self.key = key


@frozen(kw_only=True)
class Claim:
    """What :meth:`SharedJournal.claim` found.

    ``status``: ``"claimed"`` (this worker holds the job now: ``token``; the entry's state
    says what to do: ``not_submitted`` submit, ``submitted`` poll its task, ``intent`` only
    with ``ambiguous=True``: resubmit), ``"held"`` (another worker's lease is live),
    ``"done"`` (finished: the entry is its outcome), ``"ambiguous"`` (an intent whose holder's
    lease ran out: report it) or ``"conflict"`` (the key holds another request)."""

    status: ClaimStatus
    row: JobRow

    @property
    def key(self) -> str:
        """The job's key."""
        return self.row.key

    @property
    def entry(self) -> JournalEntry:
        """The job's entry as the claim read it."""
        return self.row.entry

    @property
    def token(self) -> int | None:
        """The fencing token when claimed, else None."""
        return self.row.token if self.status == "claimed" else None


@runtime_checkable
class SharedJournal(JournalBackend, Protocol):
    """What a batch also uses when its journal is shared by many workers (an optional
    capability of a :class:`JournalBackend`: the PostgreSQL journal has it, SQLite not).

    * **claims**: a job is held by one worker at a time (:meth:`claim`, a lease renewed by
      :meth:`renew`; a lost lease fences that worker's later writes for the job);
    * **reads**: :meth:`fetch` the rows of jobs other workers hold, to learn when they end;
    * **one budget per batch**: :meth:`reserve` (atomic against ``cap`` over every worker),
      :meth:`settle`, :meth:`release`, :meth:`adjust`; with ``key=`` the job's row keeps its
      part, so whoever finishes a job settles what its reservation was;
    * **one rate limit per account**: :meth:`gate_state`, the account limiter's shared state
      (``omnivid._http.gate.SharedGate``), on the same database;
    * :meth:`aflush` and :meth:`aclose`: awaitable commits (the sync ones only start them).
    """

    @property
    def worker(self) -> str:
        """This worker's name in claims."""
        ...

    @property
    def lease(self) -> float:
        """Seconds a claim lasts without renewal."""
        ...

    async def claim(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str | None = None,
        request_json: str | None = None,
        ambiguous: bool = False,
    ) -> Claim:
        """Claim the job ``key`` (added when new); see :class:`Claim`."""
        ...

    async def fetch(self, keys: Iterable[str | int]) -> dict[str, JobRow]:
        """The rows of ``keys`` as the database has them now."""
        ...

    async def renew(self) -> set[str]:
        """Renew this worker's leases; the keys found lost (another worker claimed them)."""
        ...

    def rows(self, *, page: int = 1000) -> AsyncIterator[JobRow]:
        """Every row of the batch, in key order (a page at a time)."""
        ...

    async def reserve(self, amount: float, cap: float | None, *, key: str | None = None) -> bool:
        """Reserve ``amount`` if the batch's ``spent + reserved + amount <= cap``."""
        ...

    async def settle(self, reserved: float, cost: float, *, key: str | None = None) -> Spending:
        """A job ended costing ``cost`` (with ``key``: its total so far)."""
        ...

    async def release(self, reserved: float, *, key: str | None = None) -> Spending:
        """Give a reservation back."""
        ...

    async def adjust(self, old: float, new: float, *, key: str | None = None) -> Spending:
        """A reservation changed from ``old`` to ``new``."""
        ...

    async def budget(self) -> Spending:
        """The batch's spend and reservations over every worker."""
        ...

    def gate_state(self) -> Any:
        """The shared state of provider accounts' rate limits, on this journal's database."""
        ...

    async def aflush(self) -> None:
        """Commit what is pending."""
        ...

    async def aclose(self) -> None:
        """Commit what is pending and close."""
        ...


@runtime_checkable
class RateMemory(Protocol):
    """A journal that remembers the rate learnt for each account (``AccountGate.learned_rate``),
    so that a rerun starts there instead of finding the limit again with 429s."""

    def learned_rate(self, account: str) -> float | None:
        """The rate remembered for ``account`` (requests/s), or None."""
        ...

    def remember_rate(self, account: str, rate: float) -> None:
        """Remember ``rate`` for ``account`` (replacing what was kept)."""
        ...
