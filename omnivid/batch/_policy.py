"""Batch policies: when a failed task is resubmitted, and what a job is expected to cost.

Resubmission (:class:`ResubmitPolicy`): a failed or cancelled task is classified by its
provider (``Provider.classify_failure``: ``transient`` such as an upstream quota or timeout,
``permanent`` such as moderation or invalid input, or ``unknown``). It is resubmitted while
``attempts < max_attempts`` and either ``predicate(task, kind)`` says so or, without a
predicate, ``kind in retry_on``. The wait before attempt ``n + 1`` (``n`` tasks so far) is::

    delay = uniform(0.5, 1) * min(max_delay, base_delay * 2 ** (n - 1))     (provider seconds)

multiplied by the client's ``time_scale``.

Costs are in the provider's billing unit: APIMart's ``cost`` (currency), EvoLink's credits
(it reports no currency cost). Before a submit the budget reserves an estimate
(:func:`estimate_cost`): the caller's ``cost_estimate`` if given, else the model's
``ModelSpec.estimate`` (EvoLink: by duration, ``"auto"`` as the longest), else 0; after the
submit the provider's figure (EvoLink's ``credits_reserved``) replaces it; when the task ends
its actual cost (:func:`task_cost`) replaces the reservation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from attrs import field, frozen

from .._models import Task, TaskStatus, VideoRequest
from ..providers import Provider

__all__ = [
    "DEFAULT_RESUBMIT",
    "CostEstimate",
    "ResubmitPolicy",
    "estimate_cost",
    "reserved_after_submit",
    "task_cost",
]

CostEstimate = Callable[[VideoRequest], float] | float
"""A fixed cost per job, or a function of the request."""

ResubmitPredicate = Callable[[Task, str], bool]


def _kinds(value: Iterable[str]) -> frozenset[str]:
    kinds = frozenset(value)
    unknown = kinds - {"transient", "permanent", "unknown"}
    if unknown:
        raise ValueError(
            f"retry_on={sorted(unknown)!r}: kinds are 'transient', 'permanent' and 'unknown'"
        )
    return kinds


@frozen(kw_only=True)
class ResubmitPolicy:
    """Which failed tasks a batch submits again, how often and after how long.

    ``max_attempts`` counts tasks per job, the first included (1 = never resubmit).
    ``retry_on``: the failure kinds resubmitted (default: only ``transient``; moderation and
    invalid input are ``permanent`` and never resubmitted; ``unknown`` is not either, so
    money is not spent on a failure nobody understood). ``predicate(task, kind) -> bool``
    replaces ``retry_on`` when given. Delays are provider seconds (see module docstring).
    """

    max_attempts: int = field(default=3)
    retry_on: frozenset[str] = field(default=frozenset({"transient"}), converter=_kinds)
    base_delay: float = 10.0
    max_delay: float = 300.0
    predicate: ResubmitPredicate | None = field(default=None, eq=False)

    @max_attempts.validator
    def _check_attempts(self, _: object, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_attempts={value}: must be 1 or more")

    def should_resubmit(self, task: Task, kind: str, attempts: int) -> bool:
        """True when a job whose ``attempts``-th task ended as ``task`` gets another one."""
        if attempts >= self.max_attempts or task.status is TaskStatus.COMPLETED:
            return False
        if self.predicate is not None:
            return bool(self.predicate(task, kind))
        return kind in self.retry_on

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Provider seconds to wait before the next attempt, after ``attempts`` tasks."""
        r = rng or random
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** max(attempts - 1, 0))
        return r.uniform(0.5, 1.0) * ceiling


DEFAULT_RESUBMIT = ResubmitPolicy()
"""The default: transient failures, up to 3 tasks per job."""


def estimate_cost(
    provider: Provider, request: VideoRequest, estimate: CostEstimate | None = None
) -> float:
    """What a job is expected to cost before it is submitted (see module docstring)."""
    if estimate is not None:
        value: float = estimate(request) if callable(estimate) else estimate
        return float(value)
    spec = provider.models.get(request.model)
    cost = spec.estimate(request) if spec is not None else None
    return float(cost) if cost is not None else 0.0


def task_cost(task: Task) -> float:
    """What a terminal task cost: its ``cost``, else (completed only) its credits, else 0."""
    if task.cost is not None:
        return float(task.cost)
    if task.status is TaskStatus.COMPLETED and task.credits is not None:
        return float(task.credits)
    return 0.0


def reserved_after_submit(task: Task, estimate: float) -> float:
    """The reservation once a task exists: a reported cost or credit reservation, if any."""
    if task.cost:
        return float(task.cost)
    if task.credits:
        return float(task.credits)
    return estimate
