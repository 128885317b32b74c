"""One job's mutable state inside a batch, and the batch's settings.

A job's phases (``Job.phase``) and how it moves between them: the state machine in
:mod:`omnivid.batch._engine.engine`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

from attrs import field, frozen

from .._models import Task, VideoRequest
from ..errors import ValidationError
from ..journal import JournalBackend
from ._outcome import Event
from ._policy import CostEstimate, ResubmitPolicy

__all__ = ["BatchOptions", "Job"]


def _positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise ValidationError(name, value, "must be a positive number of seconds or None")


@frozen(kw_only=True)
class BatchOptions:
    """How a batch runs; see :meth:`omnivid.AsyncClient.map` for each setting.

    ``ambiguous_hold`` (provider seconds, default the model's typical duration) is how long
    the slot of an ambiguous submit stays taken.
    """

    max_in_flight: int = 16
    max_cost: float | None = None
    deadline: float | None = None
    resubmit: ResubmitPolicy | None = field(factory=ResubmitPolicy)
    journal: str | os.PathLike[str] | JournalBackend | None = None
    resubmit_ambiguous: bool = False
    on_event: Callable[[Event], None] | None = field(default=None, eq=False)
    cost_estimate: CostEstimate | None = field(default=None, eq=False)
    prefetch: int | None = None
    ambiguous_hold: float | None = None
    batch: str | None = None

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
        if j is not None and not isinstance(j, JournalBackend | str | os.PathLike):
            raise ValidationError(
                "journal", j, "must be a path, a postgresql:// URL, a Journal or None"
            )
        b = self.batch
        if b is not None and (not isinstance(b, str) or not b.strip() or len(b) > 200):
            raise ValidationError("batch", b, "must be a non-empty name (200 characters at most)")


class Job:
    """One job of a batch (see the module docstring for its phases)."""

    __slots__ = (
        "ambiguous_count",
        "attempts",
        "body",
        "completed_at",
        "cost",
        "deadline_at",
        "estimate",
        "first_poll",
        "fp",
        "gen",
        "jkey",
        "journaled",
        "key",
        "lost",
        "nudged",
        "phase",
        "poll_failures",
        "queued_at",
        "request",
        "request_json",
        "requeues",
        "reserved",
        "serial",
        "submitted_at",
        "task",
        "task_ids",
        "typical",
        "worker",
        "zombie",
    )

    def __init__(self, serial: int, key: Hashable, request: VideoRequest, now: float) -> None:
        self.serial = serial
        self.key = key
        self.jkey: str | None = None  # the journal key, when journaled
        self.journaled = False  # this batch wrote the job's journal entry
        self.request = request
        self.fp: str | None = None
        self.request_json: str | None = None  # canonical JSON, computed with ``fp``
        self.body: dict[str, Any] | None = None
        self.attempts = 0  # tasks created for this job
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
        self.gen = 0  # bumped at each schedule: older heap entries are stale
        self.phase = "queued"
        self.nudged = False
        self.requeues = 0
        self.poll_failures = 0
        self.typical = 60.0
        self.zombie = False
        self.ambiguous_count = 0
        self.worker: str | None = None  # who ran it (a shared journal)
        self.lost = False  # its lease went to another worker (a shared journal)

    def __repr__(self) -> str:
        return f"<Job {self.key!r} {self.phase} attempts={self.attempts} task={self.task_ids[-1:]}>"

    @property
    def fingerprint(self) -> str:
        """The request's fingerprint (computed once, when first needed)."""
        if self.fp is None:
            self.fp, self.request_json = self.request.fingerprint_and_json()
        return self.fp
