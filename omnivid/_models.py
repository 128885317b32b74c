"""Domain models shared by every provider: requests, tasks, videos.

Wire names never appear here: each provider adapter maps its own JSON to these classes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
import cattrs
from attrs import field, frozen
from cattrs.gen import make_dict_unstructure_fn, override

from ._untrusted import media_source
from .errors import ValidationError

__all__ = [
    "FailureCause",
    "Task",
    "TaskError",
    "TaskStatus",
    "Video",
    "VideoRequest",
    "converter",
]

Duration = int | Literal["auto"]

FailureCause = Literal["quota", "timeout", "moderation", "invalid", "cancelled", "unknown"]
"""Why a task failed, in one word for every provider and language: ``quota`` (an upstream quota
or capacity temporarily exhausted), ``timeout`` (upstream timeout), ``moderation`` (content
refused), ``invalid`` (bad parameters or media), ``cancelled`` or ``unknown``."""


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


def _media_list(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ValidationError(name, value, "must be a list of URLs, data URLs or file paths")


def _to_images(value: Any) -> tuple[str, ...]:
    return _media_list("images", value)


def _to_videos(value: Any) -> tuple[str, ...]:
    return _media_list("videos", value)


def _to_extra(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy (so the request cannot change under the caller's feet)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("extra", value, "must be a mapping of wire field names to values")
    for key in value:
        if not isinstance(key, str) or not key:
            raise ValidationError("extra", value, "keys must be non-empty strings")
    return dict(value)


def _to_duration(value: Any) -> Duration | None:
    """Whole numbers as ``int`` (``6.0`` and ``"6"`` become ``6``); anything else is kept as
    given and refused by validation with a clear message."""
    if value is None or value == "auto" or isinstance(value, bool):
        return value  # type: ignore[no-any-return]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value  # type: ignore[no-any-return]


@frozen(kw_only=True)
class VideoRequest:
    """One video generation, independent of provider.

    ``images`` and ``videos`` hold http(s) URLs, data URLs, bare base64 (EvoLink images) or
    local file paths; local files are turned into data URLs where the provider accepts them.
    ``duration`` is seconds (a whole number: ``6.0`` is read as ``6``) or ``"auto"``.
    ``extend_from`` is an earlier task id to continue or edit (multi-turn). ``size`` is
    Omni-Flash-Ext's alias of ``aspect_ratio``. ``extra`` is passed through to the provider's
    body unchanged, for fields omnivid does not know yet (a documented field there is refused:
    use the named field).

    A request built from untrusted data (a web form, a network body) should come from
    :meth:`from_dict` with ``allow_local_files=False``, so that it cannot name a file on the
    server.
    """

    model: str
    prompt: str | None = None
    images: tuple[str, ...] = field(default=(), converter=_to_images)
    videos: tuple[str, ...] = field(default=(), converter=_to_videos)
    duration: Duration | None = field(default=None, converter=_to_duration)
    aspect_ratio: str | None = None
    size: str | None = None
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
    def from_dict(cls, data: Mapping[str, Any], *, allow_local_files: bool = True) -> VideoRequest:
        """Build from the plain form; unknown keys and wrong types are a ``ValidationError``
        naming the field.

        ``allow_local_files=False`` is for untrusted data: an ``images``/``videos`` entry that
        reads as a local path (not an http(s) URL, a data URL or bare base64) is refused, by
        its text alone, without touching the filesystem; nothing in the request built can then
        make omnivid read a file.
        """
        if not isinstance(data, Mapping):
            raise ValidationError("request", data, "must be an object (a mapping)")
        names = set(_REQUEST_FIELDS)
        unknown = sorted(set(data) - names, key=str)
        if unknown:
            raise ValidationError(
                str(unknown[0]),
                data[unknown[0]],
                f"unknown field; known: {', '.join(sorted(names))}",
            )
        if "model" not in data:
            raise ValidationError("model", None, "required")
        request = cls(**data)
        if not allow_local_files:
            for name in ("images", "videos"):
                for i, value in enumerate(getattr(request, name)):
                    if isinstance(value, str) and value.strip() and media_source(value) == "path":
                        raise ValidationError(
                            f"{name}[{i}]",
                            value,
                            "local file paths are not accepted here; pass an http(s) URL or "
                            "a data URL",
                        )
        return request

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

    @property
    def cause(self) -> FailureCause:
        """The failure's cause from its code and message, in any of the providers' languages
        (zh, ja, en, ko): quota, timeout, moderation, invalid or unknown."""
        return classify_failure_text(f"{self.code} {self.message}")


# Words naming each cause, in English, Chinese (simplified, traditional), Japanese and Korean. The
# first cause whose words appear wins: a refusal (moderation, invalid) is never retried by
# mistake because its message also mentions a timeout or a quota.
_CAUSE_TEXT: tuple[tuple[FailureCause, str], ...] = (
    (
        "moderation",
        "moderat|safety|policy|nsfw|content filter|审核|審核|审查|審查|违规|違規|敏感|審査|"
        "モデレーション|不適切|ポリシー|콘텐츠 검토|검열|유해|정책",
    ),
    (
        "invalid",
        "invalid|malformed|参数|參數|无效|無效|不合法|非法|パラメータ|無効|不正|유효하지|잘못된|매개변수",
    ),
    (
        "quota",
        "quota|overload|busy|capacity|resource exhausted|resource_exhausted|配额|配額|额度|"
        "額度|繁忙|过载|過載|クォータ|割り当て|過負荷|混雑|할당량|한도|과부하",
    ),
    ("timeout", "timeout|timed out|time out|超时|超時|タイムアウト|時間切れ|시간 초과|타임아웃"),
)
_CAUSE_WORDS = tuple((cause, tuple(words.split("|"))) for cause, words in _CAUSE_TEXT)


def classify_failure_text(text: str) -> FailureCause:
    """The cause named by a failure's text (its code and message): quota, timeout, moderation,
    invalid or unknown. APIMart reports every failure as ``task_failed`` and words the cause
    in zh, ja, en or ko (its ``language`` query), so the words of all four count."""
    lowered = text.casefold()
    for cause, words in _CAUSE_WORDS:
        if any(word in lowered for word in words):
            return cause
    return "unknown"


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
    def failure_kind(self) -> FailureCause | None:
        """Why the task did not complete (see :data:`FailureCause`); None unless it ended
        failed or cancelled."""
        if self.status is TaskStatus.CANCELLED:
            return "cancelled"
        if self.status is not TaskStatus.FAILED:
            return None
        return self.error.cause if self.error is not None else "unknown"

    @property
    def failure_reason(self) -> str:
        """Why the task failed, said once: ``CODE: MESSAGE``, or the message alone when the
        code only restates the status (APIMart's ``task_failed`` and ``task_cancelled``)."""
        err = self.error
        if err is None:
            return "no reason given"
        status = self.status.value
        if not err.code or err.code in (status, f"task_{status}"):
            return err.message or "no reason given"
        return f"{err.code}: {err.message}" if err.message else err.code

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
