"""Submitting: the budget reservation, the journal's intent before the POST and task id after
it (with a shared journal, fenced by the job's claim), requeues of submits that provably never
reached the provider, ambiguous submits, and the answers that stop every further submit.

Stopping. A submit answered 401 (the key is refused) or 402 (no balance), or an endpoint no
request has ever reached (``EndpointUnreachableError``, about 30 provider seconds after its
first connection failure), or a shared journal's database that cannot be reached
(``DatabaseUnavailableError``: no submit without its records, nor past its rate limit), stops
every further submit of the batch's account; a 403 (the key
may not use this model) stops those of that model. The jobs that have not sent their submit
end ``not_submitted`` with an error of the same class, saying so (no request is sent for them);
tasks already running are still polled, and a failed one is not resubmitted.
``BatchStats.stopped`` says why.
"""

from __future__ import annotations

import logging

from attrs import evolve

from ..._aio import clock as _clock
from ..._http.transport import _NotSent
from ...errors import (
    APIError,
    AuthenticationError,
    BudgetExceededError,
    DatabaseUnavailableError,
    EndpointUnreachableError,
    InsufficientCreditError,
    OmnividError,
    PermissionDeniedError,
    RateLimitError,
    SubmissionUnknownError,
    ValidationError,
)
from ...journal import LeaseLostError
from .._job import Job
from .._policy import estimate_cost, reserved_after_submit
from .._poller import SUBMIT
from .poll import Polling

log = logging.getLogger("omnivid")

__all__ = ["Submitting"]

_MAX_REQUEUES = 20
_STOPPING = (
    AuthenticationError,
    InsufficientCreditError,
    PermissionDeniedError,
    EndpointUnreachableError,
    DatabaseUnavailableError,
)
"""Submit errors after which no more submits are sent (see the module docstring)."""


class Submitting(Polling):
    """Submits jobs that hold a slot; a submitted job goes on to polling."""

    async def _submit(self, job: Job) -> None:
        """Submit ``job`` (it holds a slot); ends with the job polled, requeued or ended."""
        job.phase = "submitting"
        if self._stopped(job):
            return
        if not job.reserved:
            job.estimate = estimate_cost(self.provider, job.request, self.options.cost_estimate)
            try:
                reserved = await self.budget.reserve(job.estimate, key=job.jkey)
            except DatabaseUnavailableError as exc:
                self._stop_submits(job, exc)
                return
            if not reserved:
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
            if self._stopped(job):  # while it waited for room
                return
        if job.body is None:
            try:
                job.body = self.client.build_body(job.request)
            except ValidationError as exc:
                self._release_reservation(job)
                self.slots.release()
                self._end_not_submitted(job, exc)
                return
        job.phase = "posting"  # from here a cancelled job's intent may be in the journal
        try:
            conflict = await self._journal.intent(job)
        except DatabaseUnavailableError as exc:
            self._stop_submits(job, exc)
            return
        if conflict is not None and job.lost:  # another worker claimed it: it goes on there
            self._hand_over(job)
            return
        if conflict is not None:
            self._release_reservation(job)
            self.slots.release()
            self._end(job, error=conflict, kind="not_submitted")
            return
        if self._stopped(job):  # while its intent was committed (its entry: not_submitted)
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
        except _STOPPING as exc:  # the provider did not create a task, and will not
            self._stop_submits(job, exc)
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
        self.budget.adjust(job.reserved, reserve, key=job.jkey)
        job.reserved = reserve
        if self.options.deadline is not None:
            job.deadline_at = now + self.options.deadline * self.time_scale
        try:
            await self._journal.submitted(job, task)
        except LeaseLostError as exc:  # another worker resubmitted it, as it was asked to
            self._by_task.pop(task.id, None)
            exc.task_id = task.id
            self.budget.hand_over(job.reserved)
            job.reserved = 0.0
            self.slots.release()
            self._end(job, task=task, error=exc, kind="failed")
            return
        self.events.emit("submitted", job.key, task.id, attempt=job.attempts)
        if self._schedule_poll(job, now, inline=True):
            await self._poll(job)

    def _requeue(self, job: Job, exc: OmnividError) -> None:
        """The provider provably did not take the submit (429, never sent): send it again,
        unless the endpoint was never reached for too long."""
        transport = self.client.transport
        unreachable = transport.unreachable() if isinstance(exc, _NotSent) else None
        if unreachable is not None:
            self._stop_submits(job, unreachable)
            return
        job.requeues += 1
        if job.requeues > _MAX_REQUEUES:
            self.slots.release()
            self._end_not_submitted(job, exc)
            return
        now = _clock.now()
        wait = self.client.retry.backoff_wait(min(job.requeues, 8), self._rng) * self.time_scale
        due = max(now + wait, self.client.gate.closed_until)
        detail: dict[str, object] = {"reason": "rate_limited"}
        if isinstance(exc, _NotSent):
            detail = {"reason": "not_sent", "error": str(exc)}
            unreachable_at = transport.unreachable_deadline()
            if unreachable_at is not None:  # try again by the time it is given up on
                due = min(due, max(now, unreachable_at))
        self.events.emit(
            "retrying", job.key, None, delay=due - now, attempt=job.attempts + 1, **detail
        )
        job.phase = "backoff"
        self._schedule.push(due, SUBMIT, job)

    def _stop_submits(self, job: Job, cause: OmnividError) -> None:
        """``job``'s submit got an answer that stops further submits (see the module
        docstring): it ends not submitted with ``cause``, and so will the jobs after it."""
        scope = job.request.model if isinstance(cause, PermissionDeniedError) else None
        if scope not in self._refusals:
            self._refusals[scope] = cause
            what = f"submits of {scope}" if scope else "submits"
            why = f"{self.provider.name} stopped {what}: {cause}"
            if isinstance(cause, DatabaseUnavailableError):
                why = f"submits stopped: {cause}"
            log.warning("%s; jobs not yet submitted end not submitted", why)
            self.stopped = why if self.stopped is None else f"{self.stopped}; {why}"
        self._release_reservation(job)
        self.slots.release()
        self._end_not_submitted(job, cause)

    def _stopped(self, job: Job) -> bool:
        """End ``job`` (it holds a slot) if its submits were stopped; True when it was."""
        cause = self._refusals.get(None) or self._refusals.get(job.request.model)
        if cause is None:
            return False
        self._release_reservation(job)
        self.slots.release()
        if job.task is not None and job.task.is_terminal:
            self._end_failed(job, job.task)  # its failed task is not resubmitted
        else:
            self._end_not_submitted(job, _restated(cause, job.request.model))
        return True

    def _on_ambiguous(self, job: Job, exc: SubmissionUnknownError) -> None:
        """The submit may have been accepted: never resubmitted unless asked."""
        self._counts["ambiguous"] += 1
        job.ambiguous_count += 1
        if job.reserved:  # it may be billed: the budget counts it as spent
            total = job.cost + job.reserved
            self.budget.settle(job.reserved, job.reserved, key=job.jkey, total=total)
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


def _restated(cause: OmnividError, model: str) -> OmnividError:
    """The error of a job not submitted because of ``cause`` (an earlier submit's): of the
    same class, so callers branch on it as on the cause, and saying that nothing was sent."""
    if isinstance(cause, APIError):
        scope = f"model {cause.model}" if isinstance(cause, PermissionDeniedError) else "account"
        message = (
            f"not submitted: an earlier submit to this {scope} got this answer "
            f"({cause.message}); no more submits are sent to it"
        )
    else:
        message = f"not submitted: {cause.message}"
    error = type(cause).__new__(type(cause))  # the cause's attributes, whatever its __init__
    error.__dict__.update(cause.__dict__)
    error.args = (message,)
    error.message = message
    error.model = model
    error.task_id = None
    return error
