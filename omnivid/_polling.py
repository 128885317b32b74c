"""When to poll a task next: server-hinted, progress-aware, jittered, floored and capped.

All settings are in provider seconds; ``time_scale`` converts them to real seconds (the
simulator with ``time_scale=0.01`` runs 100x faster, so the policy must too). With ``t`` the
time since submit, ``est`` the server's ``estimated_time`` (or the model's typical time) and
``p`` the task's progress in percent::

    first poll:   at min(max(floor, first_fraction * est), max_interval)
    progress p:   hi = t * 100 / p            (upper bound of the total: p is truncated)
                  p <  refine_below:  next at refine_fraction * hi     (a probe at high progress)
                  p >= refine_below:  next at hi * (1 + margin)        (just after the end)
                  wait <= max(max_interval, max_growth * t)            (a stuck task still polls)
    no progress:  next at est * (1 + margin), wait <= max_interval     (stale estimates capped)
    overdue:      every overdue_fraction * t                           (geometric back-off)
    always:       wait >= min_interval
    jitter:       wait * uniform(1, 1 + jitter), except the final wait aimed at the end, which
                  gets + uniform(0, jitter) * min(wait, max(min_interval, margin * hi))

The estimate only sets the first poll; from then on the task's own progress re-estimates its
end, so an estimate off by tens of percent still yields about two or three polls per task and
a result within a few percent of the task's duration after it finished.
"""

from __future__ import annotations

import random

from attrs import evolve, frozen

from ._models import Task

__all__ = ["PollPolicy"]


@frozen(kw_only=True)
class PollPolicy:
    """How ``wait``, ``watch`` and ``map`` pace their polls. Defaults follow the providers'
    advice (wait 5 s before the first poll) and cap waits based on a server estimate alone at
    30 s; waits based on the task's reported progress are bounded by ``max_growth`` instead."""

    floor: float = 5.0
    first_fraction: float = 0.75
    margin: float = 0.01
    min_interval: float = 1.0
    max_interval: float = 30.0
    overdue_fraction: float = 0.05
    jitter: float = 0.05
    refine_below: int = 25
    refine_fraction: float = 0.85
    max_growth: float = 8.0
    time_scale: float = 1.0

    def scaled(self, time_scale: float) -> PollPolicy:
        """The same policy for a clock running ``1 / time_scale`` times faster."""
        return evolve(self, time_scale=time_scale)

    def next_delay(
        self,
        task: Task,
        elapsed: float,
        *,
        first: bool,
        default_estimate: float = 60.0,
        rng: random.Random | None = None,
    ) -> float:
        """Real seconds to wait before the next poll of ``task``, ``elapsed`` real seconds after
        its submit. ``first`` is true when the task has not been polled yet."""
        scale = self.time_scale
        t = max(0.0, elapsed / scale)
        est = task.estimated_seconds if task.estimated_seconds else default_estimate
        r = rng or random
        progress = min(task.progress, 99)
        if not first and progress >= 1 and t > 0:
            hi = t * 100.0 / progress
            final = progress >= self.refine_below
            target = hi * (1.0 + self.margin) if final else self.refine_fraction * hi
            wait = target - t
            if wait > 0:
                wait = min(wait, max(self.max_interval, self.max_growth * t))
                wait = max(wait, self.min_interval)
                if final:
                    span = min(wait, max(self.min_interval, self.margin * hi))
                    return (wait + r.uniform(0.0, self.jitter) * span) * scale
                return wait * (1.0 + r.uniform(0.0, self.jitter)) * scale
            wait = self.overdue_fraction * t
        elif first:
            wait = min(max(self.floor, self.first_fraction * est), self.max_interval) - t
        else:
            wait = est * (1.0 + self.margin) - t
            if wait <= 0:
                wait = self.overdue_fraction * t
        wait = min(max(wait, self.min_interval), self.max_interval)
        return wait * (1.0 + r.uniform(0.0, self.jitter)) * scale
