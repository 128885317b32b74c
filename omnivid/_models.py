"""Domain models shared by every provider: requests, tasks, videos.

Wire names never appear here: each provider adapter maps its own JSON to these classes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
import cattrs
from attrs import field, frozen
from cattrs.gen import make_dict_unstructure_fn, override

__all__ = [
    "Task",
    "TaskError",
    "TaskStatus",
    "Video",
    "VideoRequest",
    "converter",
]

Duration = int | Literal["auto"]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. ``completed``, ``failed`` and ``cancelled`` are terminal."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once the task will not change again."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def _to_tuple(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _to_extra(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy (so the request cannot change under the caller's feet)."""
    return {} if value is None else dict(value)


def _to_duration(value: Any) -> Duration | None:
    if value is None or value == "auto":
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool):
        return value  # rejected by validation with a clear message
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value  # type: ignore[no-any-return]


@frozen(kw_only=True)
class VideoRequest:
    """One video generation, independent of provider.

    ``images`` and ``videos`` hold http(s) URLs, data URLs or local file paths; local files are
    turned into data URLs where the provider accepts them. ``duration`` is seconds or ``"auto"``.
    ``extend_from`` is an earlier task id to continue or edit (multi-turn). ``extra`` is passed
    through to the provider's body unchanged, for fields omnivid does not know yet.
    """

    model: str
    prompt: str | None = None
    images: tuple[str, ...] = field(default=(), converter=_to_tuple)
    videos: tuple[str, ...] = field(default=(), converter=_to_tuple)
    duration: Duration | None = field(default=None, converter=_to_duration)
    aspect_ratio: str | None = None
    resolution: str | None = None
    generation_type: str | None = None
    extend_from: str | None = None
    callback_url: str | None = None
    extra: Mapping[str, Any] = field(factory=dict, converter=_to_extra, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form, omitting unset fields (the form used in journals and JSONL)."""
        out: dict[str, Any] = {}
        for name in _REQUEST_FIELDS:
            value = getattr(self, name)
            if value is None or value == () or (name == "extra" and not value):
                continue
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoRequest:
        """Build from the plain form; unknown keys are a ``ValidationError`` naming them."""
        from .errors import ValidationError

        names = set(_REQUEST_FIELDS)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValidationError(
                unknown[0], data[unknown[0]], f"unknown field; known: {', '.join(sorted(names))}"
            )
        if "model" not in data:
            raise ValidationError("model", None, "required")
        for name in ("images", "videos"):
            value = data.get(name)
            if value is not None and not isinstance(value, str | list | tuple):
                raise ValidationError(name, value, "must be a list of URLs or file paths")
        extra = data.get("extra")
        if extra is not None and not isinstance(extra, Mapping):
            raise ValidationError("extra", extra, "must be an object (a mapping)")
        return cls(**data)

    def fingerprint(self) -> str:
        """A stable SHA-256 of the request, to spot the same job submitted twice: the
        canonical JSON of its plain form without ``callback_url``, hashed."""
        data = self.to_dict()
        data.pop("callback_url", None)
        return _sha256(_canonical(data))

    def fingerprint_and_json(self) -> tuple[str, str]:
        """The fingerprint and the plain form as canonical JSON (sorted keys, no spaces),
        computed together (one encoding when there is no ``callback_url``)."""
        data = self.to_dict()
        text = _canonical(data)
        if "callback_url" not in data:
            return _sha256(text), text
        return self.fingerprint(), text


_REQUEST_FIELDS = tuple(a.name for a in attrs.fields(VideoRequest))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_canonical: Callable[[Mapping[str, Any]], str] = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
).encode
"""Canonical JSON (sorted keys, no spaces); one encoder, not one per call as ``json.dumps``
with options builds."""


@frozen
class Video:
    """One generated video: where to fetch it and until when (UTC), if the provider says."""

    url: str
    expires_at: datetime | None = None


@frozen
class TaskError:
    """Why a task failed: the provider's code (e.g. ``task_failed``) and its message."""

    code: str
    message: str


@frozen(kw_only=True)
class Task:
    """A snapshot of a provider task, in one shape for every provider.

    Times are UTC datetimes; durations and estimates are seconds as the provider reports them;
    ``cost`` is in the provider's currency units and ``credits`` in its credits. ``raw`` is the
    provider's JSON object for the task, unwrapped.
    """

    id: str
    provider: str
    model: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    progress: int = 0
    created_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_seconds: float | None = None
    actual_seconds: float | None = None
    cost: float | None = None
    credits: float | None = None
    videos: tuple[Video, ...] = ()
    error: TaskError | None = None
    raw: Mapping[str, Any] = field(factory=dict, hash=False, eq=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_terminal

    @property
    def video_urls(self) -> list[str]:
        """The result URLs, in order."""
        return [v.url for v in self.videos]


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, lambda d: d.timestamp())
    conv.register_structure_hook(datetime, lambda v, _: datetime.fromtimestamp(float(v), tz=UTC))
    # ``raw`` is the provider's parsed JSON already: passed through, not walked and copied
    conv.register_unstructure_hook(
        Task, make_dict_unstructure_fn(Task, conv, raw=override(unstruct_hook=_same))
    )
    return conv


def _same(value: Any) -> Any:
    return value


converter = _make_converter()
"""The domain converter: ``converter.unstructure(task)`` gives JSON-ready data (datetimes as
unix seconds) and ``converter.structure(data, Task)`` reads it back."""
