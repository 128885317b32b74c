"""Introspection: what the simulator saw and charged, for tests and benchmarks."""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import attrs


class RequestRecord(NamedTuple):
    """One request: arrival (``time.monotonic()``), method, path and status (0 = dropped)."""

    time: float
    method: str
    path: str
    status: int


class CallbackAttempt(NamedTuple):
    """One callback POST: URL, HTTP status or error text, and ``time.monotonic()`` at start."""

    url: str
    result: int | str
    time: float


def fingerprint(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a submit body, without ``callback_url``."""
    canonical = {key: value for key, value in body.items() if key != "callback_url"}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@attrs.define
class SimStats:
    """Counters since the start (or the last ``sim.reset_stats()``).

    Attributes:
        submits: ``POST .../v1/videos/generations`` requests received, whatever their answer.
        polls: ``GET .../v1/tasks/{id}`` requests received, whatever their answer.
        rate_limited: 429 responses sent.
        tasks: ids of the tasks created, in order.
        tasks_by_fingerprint: tasks created per request fingerprint (see `fingerprint`);
            a value above 1 means the same request was submitted (and accepted) twice.
        total_cost: currency charged for completed tasks (EvoLink credits x credit price).
        total_credits: credits charged (APIMart ``credits_cost`` + EvoLink credits).
        cost_by_key: currency charged per API key.
        max_in_flight: per API key, the most non-terminal tasks it had at once.
        downloads: result-file GET requests answered (any status).
        callbacks: every callback attempt, in order.
        status_counts: responses sent per HTTP status (0 = connection dropped).
        faults: injected faults per kind ("500", "reset", "lost-response", ...).
    """

    submits: int = 0
    polls: int = 0
    rate_limited: int = 0
    tasks: list[str] = attrs.field(factory=list)
    tasks_by_fingerprint: dict[str, int] = attrs.field(factory=dict)
    total_cost: float = 0.0
    total_credits: float = 0.0
    cost_by_key: dict[str, float] = attrs.field(factory=dict)
    max_in_flight: dict[str, int] = attrs.field(factory=dict)
    downloads: int = 0
    callbacks: list[CallbackAttempt] = attrs.field(factory=list)
    status_counts: dict[int, int] = attrs.field(factory=dict)
    faults: dict[str, int] = attrs.field(factory=dict)

    @property
    def double_submissions(self) -> dict[str, int]:
        """The fingerprints that created more than one task."""
        return {fp: count for fp, count in self.tasks_by_fingerprint.items() if count > 1}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``GET /_sim/stats`` returns)."""
        data = attrs.asdict(self)
        data["callbacks"] = [attempt._asdict() for attempt in self.callbacks]
        data["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        data["double_submissions"] = self.double_submissions
        return data
