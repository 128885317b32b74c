"""Reading a batch file: one JSON object per line, each one video job.

A line holds the fields of :class:`~omnivid.VideoRequest` (``model``, ``prompt``, ``images``,
``videos``, ``duration``, ``aspect_ratio``, ``resolution``, ``generation_type``,
``extend_from``, ``extra``) plus two optional ones:

* ``key``: the job's name in the journal and in ``results.jsonl`` (a string or an integer).
  Without it the key is the line number, so rerunning the same file maps every line to the same
  job; inserting lines above a keyless job changes its key (the journal then refuses it as a
  conflict instead of paying for it twice).
* ``provider``: ``apimart`` or ``evolink``; without it the ``--provider`` option, else the
  provider offering the model.

Blank lines and lines starting with ``#`` are skipped. Every line is validated here, before any
network traffic (including local media files and URL schemes); a bad line becomes a
:class:`LineError` naming the line, the field, the value and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attrs import frozen

from .._models import VideoRequest
from ..errors import ConfigurationError, OmnividError
from ..providers import Provider, get_provider, provider_for_model

__all__ = ["Job", "JobFile", "LineError", "UsageError", "parse_jobs", "read_jobs"]


class UsageError(Exception):
    """A command-line mistake: printed on one line as ``omnivid: error: ...``, exit status 2."""


@frozen
class Job:
    """One valid line: its number, key, provider name and request."""

    line: int
    key: str
    provider: str
    request: VideoRequest


@frozen
class LineError:
    """One line that cannot run, and why (one line of text)."""

    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@frozen
class JobFile:
    """A parsed batch file: the jobs that can run and the lines that cannot, in file order."""

    jobs: tuple[Job, ...]
    errors: tuple[LineError, ...]

    @property
    def providers(self) -> list[str]:
        """The providers the jobs need, sorted."""
        return sorted({job.provider for job in self.jobs})


def read_jobs(path: str | Path, *, default_provider: str | None = None) -> JobFile:
    """Parse the batch file at ``path``; an unreadable file is a :class:`UsageError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_jobs(text.splitlines(), default_provider=default_provider)


def parse_jobs(lines: Iterable[str], *, default_provider: str | None = None) -> JobFile:
    """Parse batch-file lines (numbered from 1) into jobs and line errors."""
    jobs: list[Job] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        key = str(number)
        try:
            data = _load(text)
            key = _key(data.pop("key", None), number)
            if key in seen:
                raise _LineProblem(f"key {key!r} is already used on line {seen[key]}")
            seen[key] = number
            provider_name = data.pop("provider", None)
            request = _request(data)
            provider = _resolve(request, provider_name or default_provider)
            provider.build_submit_body(request)
        except _LineProblem as exc:
            errors.append(LineError(number, key, str(exc)))
            continue
        except OmnividError as exc:
            errors.append(LineError(number, key, str(exc)))
            continue
        jobs.append(Job(line=number, key=key, provider=provider.name, request=request))
    return JobFile(jobs=tuple(jobs), errors=tuple(errors))


def _resolve(request: VideoRequest, provider: str | None) -> Provider:
    """The provider for ``request``: the one named, else the one offering its model."""
    if provider is not None:
        if not isinstance(provider, str):
            raise _LineProblem(f"provider={provider!r}: must be a string")
        try:
            return get_provider(provider)
        except ConfigurationError as exc:
            raise _LineProblem(f"provider={provider!r}: {exc.message}") from None
    return provider_for_model(request.model)


class _LineProblem(Exception):
    """A line-level problem that is not a request validation error."""


def _load(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _LineProblem(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise _LineProblem(f"expected a JSON object, got {type(data).__name__}")
    return data


def _key(value: Any, number: int) -> str:
    if value is None:
        return str(number)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _LineProblem(f"key={value!r}: must be a string or an integer")
    key = str(value).strip()
    if not key:
        raise _LineProblem("key='': must not be empty")
    return key


def _request(data: dict[str, Any]) -> VideoRequest:
    for name in ("model", "prompt", "aspect_ratio", "resolution", "generation_type"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise _LineProblem(f"{name}={value!r}: must be a string")
    for name in ("images", "videos"):
        value = data.get(name)
        if value is not None and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise _LineProblem(f"{name}={value!r}: must be a string or a list of strings")
    extra = data.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise _LineProblem(f"extra={extra!r}: must be a JSON object")
    return VideoRequest.from_dict(data)
