"""Prompt markers: deterministic outcomes and faults written into a prompt.

Grammar (documented for users in ``omnivid.testing``)::

    [[fail:quota]]  [[fail:moderation]]  [[fail:timeout]]  [[cancel]]  [[duration=SECONDS]]
    [[fault:KIND[=SECONDS][@submit|@poll|@download][*TIMES]]]

KIND is an HTTP status (500, 502, 503, 504, 429), ``reset``, ``lost-response``, ``slow``,
``malformed`` or ``truncate-download``. A fault fires ``TIMES`` times (default 1) per request
fingerprint for submits, per task for polls and downloads.
"""

from __future__ import annotations

import re

import attrs

OUTCOMES = ("quota", "moderation", "timeout")
FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "reset",
    "lost-response",
    "slow",
    "malformed",
    "truncate-download",
)
_FAULT = re.compile(
    r"\[\[fault:(?P<kind>[a-z0-9-]+)(?:=(?P<arg>\d+(?:\.\d+)?))?"
    r"(?:@(?P<where>submit|poll|download))?(?:\*(?P<times>\d+))?\]\]"
)
_FAIL = re.compile(r"\[\[fail:(?P<cause>[a-z]+)\]\]")
_DURATION = re.compile(r"\[\[duration=(?P<seconds>\d+(?:\.\d+)?)\]\]")


@attrs.frozen
class FaultMarker:
    """One ``[[fault:...]]`` marker; ``text`` (the marker itself) keys its firing count."""

    kind: str
    where: str
    times: int
    arg: float | None
    text: str


@attrs.frozen
class Markers:
    """Everything the markers in one prompt ask for."""

    outcome: str | None = None  # "quota" | "moderation" | "timeout" | "cancel"
    duration: float | None = None
    faults: tuple[FaultMarker, ...] = ()

    def for_stage(self, where: str) -> tuple[FaultMarker, ...]:
        """The fault markers that apply to ``where`` ("submit", "poll" or "download")."""
        return tuple(fault for fault in self.faults if fault.where == where)


def parse_markers(prompt: str) -> Markers:
    """Read the markers in ``prompt``; unknown or malformed markers are ordinary text."""
    outcome: str | None = "cancel" if "[[cancel]]" in prompt else None
    for match in _FAIL.finditer(prompt):
        if match["cause"] in OUTCOMES:
            outcome = match["cause"]
    duration_match = _DURATION.search(prompt)
    faults = []
    for match in _FAULT.finditer(prompt):
        kind = match["kind"]
        if kind not in FAULT_KINDS:
            continue
        default_where = "download" if kind == "truncate-download" else "submit"
        where = match["where"] or default_where
        if (kind == "truncate-download") != (where == "download") or (
            kind == "lost-response" and where != "submit"
        ):
            continue
        faults.append(
            FaultMarker(
                kind=kind,
                where=where,
                times=int(match["times"] or 1),
                arg=float(match["arg"]) if match["arg"] else None,
                text=match.group(0),
            )
        )
    return Markers(
        outcome=outcome,
        duration=float(duration_match["seconds"]) if duration_match else None,
        faults=tuple(faults),
    )
