"""When to poll a task next: server-hinted, progress-aware, jittered, floored and capped.

All settings are in provider seconds; ``time_scale`` converts them to real seconds (the
simulator with ``time_scale=0.01`` runs 100x faster, so the policy must too). With ``t`` the
time since submit and ``est`` the server's ``estimated_time`` (or the model's typical time)::

    first poll:  at max(floor, first_fraction * est)
    progress p:  total = t * 100 / p;  next at total * (1 + margin)      (re-estimated each poll)
    no progress: next at est * (1 + margin)
    overdue:     every overdue_fraction * t                               (geometric back-off)
    always:      min_interval <= wait <= max_interval, then * uniform(1, 1 + jitter)
"""

from __future__ import annotations

import random

from attrs import evolve, frozen

from ._models import Task

__all__ = ["PollPolicy"]


@frozen(kw_only=True)
class PollPolicy:
    """How ``wait``, ``watch`` and ``map`` pace their polls. Defaults follow the providers'
    advice (wait 5 s before the first poll) and cap a stale estimate at 30 s between polls."""

    floor: float = 5.0
    first_fraction: float = 0.75
    margin: float = 0.01
    min_interval: float = 1.0
    max_interval: float = 30.0
    overdue_fraction: float = 0.05
    jitter: float = 0.05
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
        if first:
            wait = max(self.floor, self.first_fraction * est) - t
        else:
            progressed = task.progress >= 1 and t > 0
            total = t * 100.0 / min(task.progress, 99) if progressed else est
            wait = total * (1.0 + self.margin) - t
            if wait <= 0:
                wait = self.overdue_fraction * t
        wait = min(max(wait, self.min_interval), self.max_interval)
        r = rng or random
        return wait * (1.0 + r.uniform(0.0, self.jitter)) * scale
