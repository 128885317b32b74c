"""Reacting to polls: when a task is polled next (server hint, progress, jitter, deadline, a
callback's nudge), what a poll's answer changes, and a terminal task's settlement or resubmit.
"""

from __future__ import annotations

import logging

from attrs import evolve

from ..._aio import clock as _clock
from ..._http.retry import retry_hint
from ..._models import Task, TaskStatus
from ...errors import (
    EndpointUnreachableError,
    NotFoundError,
    OmnividError,
    RateLimitError,
    ServerError,
    TaskTimeoutError,
    TransportError,
)
from .._job import Job
from .._policy import estimate_cost, task_cost
from .._poller import POLL, SUBMIT
from .end import Ending

log = logging.getLogger("omnivid")

__all__ = ["Polling"]

_MAX_POLL_FAILURES = 30


class Polling(Ending):
    """Polls submitted tasks (the heap-based schedule decides when) and reacts to answers."""

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

    def _resume(self, job: Job, reserved: float | None) -> None:
        """Poll a task id recorded by an earlier run (it holds a slot), taking over the cost
        ``reserved`` for it in the journal (None: not recorded, reserve the estimate)."""
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
        if reserved is None:  # a journal older than reservations: count it anew
            job.reserved = job.estimate
            self.budget.adjust(0.0, job.estimate, key=job.jkey)
        else:  # counted by the journal already: this job owns it now
            job.reserved = reserved
            self.budget.take_over(reserved, key=job.jkey)
        self.events.emit("resumed", job.key, task_id, attempt=job.attempts)
        self._schedule_poll(job, now)

    async def _poll(self, job: Job) -> None:
        """Poll the job's task, again at once while the next poll is due already."""
        while await self._poll_once(job):
            pass

    async def _poll_once(self, job: Job) -> bool:
        if job.lost:  # another worker claimed it (a shared journal): it polls it now
            self._hand_over(job)
            return False
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
        is never dropped before the failures are many, or the endpoint was never reached."""
        if isinstance(exc, EndpointUnreachableError):
            self._end_poll_error(job, exc)
            return
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
        wait = retry.backoff_wait(min(job.poll_failures, 8), self._rng) * self.time_scale
        hint = retry_hint(exc)
        if hint is not None:  # a 5xx's Retry-After (a 429's closed the gate already)
            wait = max(wait, retry.hint_wait(hint, self._rng))
        due = max(now + wait, self.client.gate.closed_until)
        unreachable_at = self.client.transport.unreachable_deadline()
        if unreachable_at is not None:  # never reached: try again by the time it is given up
            due = min(due, max(now, unreachable_at))
        if job.deadline_at is not None and not job.zombie:
            due = min(due, job.deadline_at)
        job.phase = "waiting"
        self._schedule.push(due, POLL, job)

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

    def _on_terminal(self, job: Job, task: Task, body: str) -> None:
        """A terminal task (``body``: the response text it was read from, for the journal)."""
        self._by_task.pop(task.id, None)
        cost = task_cost(task)
        job.cost += cost
        self.budget.settle(job.reserved, cost, key=job.jkey, total=job.cost)
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

    def _on_nudge(self, task_id: str) -> bool:
        job = self._by_task.get(task_id)
        if job is None:
            return False
        if job.phase == "waiting":
            self._schedule.push(_clock.now(), POLL, job)
        else:
            job.nudged = True
        return True
