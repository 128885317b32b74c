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
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

from attrs import frozen

from .._models import VideoRequest
from ..errors import ConfigurationError, OmnividError
from ..providers import Provider, get_provider, provider_for_model

__all__ = [
    "Job",
    "JobFile",
    "KeyRegistry",
    "LineError",
    "LineParser",
    "UsageError",
    "iter_lines",
    "parse_jobs",
    "peek",
    "read_jobs",
]


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
    return parse_jobs((text for _, text in iter_lines(path)), default_provider=default_provider)


def iter_lines(path: str | Path) -> Generator[tuple[int, str], None, None]:
    """The lines of the batch file at ``path``, numbered from 1, read one at a time (never the
    whole file at once). Lines end at ``\\n``, ``\\r\\n`` or ``\\r``; a file that cannot be
    read, or is not UTF-8, is a :class:`UsageError` (when the line that is not is reached)."""
    try:
        handle = Path(path).open(encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        number = 0
        while True:
            try:
                raw = handle.readline()
            except UnicodeDecodeError as exc:
                raise UsageError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
            if not raw:
                return
            number += 1
            yield number, raw


def parse_jobs(lines: Iterable[str], *, default_provider: str | None = None) -> JobFile:
    """Parse batch-file lines (numbered from 1) into jobs and line errors."""
    parser = LineParser(default_provider)
    jobs: list[Job] = []
    errors: list[LineError] = []
    for number, raw in enumerate(lines, start=1):
        item = parser.parse(number, raw)
        if isinstance(item, Job):
            jobs.append(item)
        elif item is not None:
            errors.append(item)
    return JobFile(jobs=tuple(jobs), errors=tuple(errors))


class KeyRegistry:
    """The keys a batch file's lines have claimed so far, and where.

    A line without ``key`` is keyed by its number, so most files hold nothing here but one byte
    per line (``numbered``: the line claimed its own number); explicit keys are kept in a dict
    (key -> line: about 10 MB at 100,000 lines). An explicit key written as a line number
    (``"5"``, not ``"05"``) meets the keyless line 5."""

    __slots__ = ("named", "numbered")

    def __init__(self) -> None:
        self.named: dict[str, int] = {}
        self.numbered = bytearray()  # index n - 1: line n claimed the key str(n)

    def claim(self, key: str, number: int, *, explicit: bool) -> int | None:
        """Claim ``key`` for line ``number``; the earlier line holding it, if any (then
        nothing is claimed)."""
        earlier = self.named.get(key)
        if earlier is not None:
            return earlier
        if not explicit:  # key == str(number)
            numbered = self.numbered
            if len(numbered) < number:
                numbered.extend(bytes(number - len(numbered)))
            numbered[number - 1] = 1
            return None
        if key.isascii() and key.isdigit() and key == str(int(key)):
            line = int(key)
            if 0 < line <= len(self.numbered) and self.numbered[line - 1]:
                return line
        self.named[key] = number
        return None


class LineParser:
    """Turns one numbered line at a time into a :class:`Job`, a :class:`LineError` or None (a
    blank or comment line). With ``track_keys`` it remembers each key's line
    (:class:`KeyRegistry`), so that a later line reusing it is an error; without, the caller
    says which lines reuse a key."""

    def __init__(self, default_provider: str | None = None, *, track_keys: bool = True) -> None:
        self.default_provider = default_provider
        self.keys: KeyRegistry | None = KeyRegistry() if track_keys else None
        self.reused: int | None = None  # the earlier line of the last line's key, if reused

    def parse(self, number: int, raw: str, *, reused: int | None = None) -> Job | LineError | None:
        """Line ``number``; ``reused``: the earlier line holding its key, when known."""
        self.reused = None
        text = raw.strip()
        if not text or text.startswith("#"):
            return None
        key = str(number)
        try:
            data = _load(text)
            given = data.pop("key", None)
            key = _key(given, number)
            if self.keys is not None:
                reused = self.keys.claim(key, number, explicit=given is not None)
            if reused is not None:
                self.reused = reused
                raise _LineProblem(f"key {key!r} is already used on line {reused}")
            provider_name = data.pop("provider", None)
            request = _request(data)
            provider = _resolve(request, provider_name or self.default_provider)
            provider.build_submit_body(request)
        except (_LineProblem, OmnividError) as exc:
            return LineError(number, key, str(exc))
        return Job(line=number, key=key, provider=provider.name, request=request)


def peek(number: int, raw: str) -> tuple[str, str | None]:
    """A line's key and model, read without checking the rest (for rows of jobs a stopped
    batch never reached); the line number and None when they cannot be read."""
    try:
        data = _load(raw.strip())
        key = _key(data.get("key"), number)
    except _LineProblem:
        return str(number), None
    model = data.get("model")
    return key, model if isinstance(model, str) else None


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
