"""Faults and rate limits: what goes wrong for a request, decided before it is answered.

`RequestFaults` is what one request will suffer; `draw_faults` decides it for a submit, a poll
or a download, from the prompt's fault markers first (each fires a limited number of times per
scope) and then from the configured probabilities of `FaultConfig`. `draw_outcome` draws a new
task's failure cause from the same configuration. `admit` is the gate every API request passes
first: a bearer key the simulator accepts, within the key's token-bucket rate limit. How a
faulty answer is then written on the wire is in ``_replies``.
"""

from __future__ import annotations

import attrs
from aiohttp import web

from ._markers import FaultMarker
from ._state import SimState
from ._wire import ApiError


@attrs.define
class RequestFaults:
    """The faults one request will suffer."""

    pre: str | None = None  # "reset", "429" or a 5xx status: answered without processing
    lost_response: bool = False
    slow: float = 0.0
    malformed: bool = False
    truncate: bool = False


def _chance(state: SimState, rate: float) -> bool:
    return rate > 0 and state.rng.random() < rate


def draw_faults(
    state: SimState,
    faults: RequestFaults,
    stage: str,
    scope: str,
    markers: tuple[FaultMarker, ...],
) -> None:
    """Decide one request's faults: its markers first, then the configured probabilities."""
    for marker in markers:
        hit = (stage, scope, marker.text)
        if state.marker_hits.get(hit, 0) >= marker.times:
            continue
        state.marker_hits[hit] = state.marker_hits.get(hit, 0) + 1
        if marker.kind == "lost-response":
            faults.lost_response = True
        elif marker.kind == "slow":
            faults.slow = marker.arg if marker.arg is not None else state.faults.slow_seconds
        elif marker.kind == "malformed":
            faults.malformed = True
        elif marker.kind == "truncate-download":
            faults.truncate = True
        else:  # "reset", "429" or a 5xx status
            faults.pre = faults.pre or marker.kind
    config = state.faults
    if stage == "download":
        faults.truncate = faults.truncate or _chance(state, config.truncate_download_rate)
    else:
        if faults.pre is None:
            if _chance(state, config.reset_rate):
                faults.pre = "reset"
            elif _chance(state, config.error_5xx_rate):
                faults.pre = str(state.rng.choice(config.error_5xx_statuses))
            elif _chance(state, config.rate_limit_rate):
                faults.pre = "429"
        if stage == "submit" and _chance(state, config.lost_response_rate):
            faults.lost_response = True
        if not faults.slow and _chance(state, config.slow_rate):
            faults.slow = config.slow_seconds
        faults.malformed = faults.malformed or _chance(state, config.malformed_rate)
    for kind, active in (
        (faults.pre or "", faults.pre is not None),
        ("lost-response", faults.lost_response),
        ("slow", bool(faults.slow)),
        ("malformed", faults.malformed),
        ("truncate-download", faults.truncate),
    ):
        if active:
            state.stats.faults[kind] = state.stats.faults.get(kind, 0) + 1


def draw_outcome(state: SimState) -> str | None:
    """A new task's failure cause ("quota", ..., "cancel") by the configured rates; None: none."""
    config = state.faults
    for cause, rate in (
        ("quota", config.fail_quota_rate),
        ("moderation", config.fail_moderation_rate),
        ("timeout", config.fail_timeout_rate),
        ("cancel", config.cancel_rate),
    ):
        if _chance(state, rate):
            return cause
    return None


def admit(state: SimState, request: web.Request) -> str:
    """The request's API key, if it is accepted and within its rate limit."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    allowed = state.config.api_keys
    if scheme.lower() != "bearer" or not key or (allowed is not None and key not in allowed):
        raise ApiError("unauthorized")
    rps = state.config.rps
    if rps is not None:
        burst = state.config.burst or max(1.0, rps)
        if not state.buckets.take(key, rps, burst):
            raise ApiError("rate_limited")
    return key
