"""EvoLink: ``gemini-omni-flash-reference-to-video``.

Wire format: bare objects (no wrapping); the task has ``results`` (a list of URL strings),
``task_info`` and, on submit, ``usage``; errors are ``{"error": {"code": <str>, ...}}``.
Result URLs are valid for 24 hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import attrs
from attrs import define

from .._models import Task, TaskError, Video, VideoRequest
from ._base import DEFAULT_CHECKS, CheckOptions, ModelSpec, Provider, register
from ._media import resolve_all
from ._rules import Checker
from ._wire import from_unix, make_converter, map_status, read

__all__ = ["EvoLink"]

NAME = "evolink"
R2V = "gemini-omni-flash-reference-to-video"
RESULT_TTL = timedelta(hours=24)


@define
class _TaskInfo:
    can_cancel: bool | None = None
    estimated_time: float | None = None
    video_duration: float | None = None


@define
class _Usage:
    billing_rule: str | None = None
    credits_reserved: float | None = None
    user_group: str | None = None


@define
class _WireError:
    code: str = "unknown"
    message: str = ""


@define
class _Task:
    id: str
    status: str
    created: float | None = None
    model: str | None = None
    progress: int = 0
    task_info: _TaskInfo | None = None
    usage: _Usage | None = None
    results: list[str] = attrs.Factory(list)
    error: _WireError | None = None
    completed: float | None = None
    cost: float | None = None


_conv = make_converter({"images": "image_urls"})


_RULES = Checker(NAME, R2V)  # built once, not per request


def _check_r2v(request: VideoRequest, options: CheckOptions) -> None:
    c = _RULES
    c.common(request)
    c.prompt(request)
    c.forbid(request, "videos", "resolution", "generation_type", "extend_from", "size")
    c.count("images", request.images, range(1, 7), f"{R2V} takes 1 to 6 reference images")
    if request.duration != "auto":
        c.choice("duration", request.duration, [*range(3, 11), "auto"])
    c.choice("aspect_ratio", request.aspect_ratio, ["16:9", "9:16", "auto"])
    c.callback_url(request.callback_url, allow_private=options.allow_private_callbacks)


class EvoLink(Provider):
    """EvoLink's API (``https://api.evolink.ai``, key in ``EVOLINK_API_KEY``)."""

    name = NAME
    base_url = "https://api.evolink.ai"
    env_var = "EVOLINK_API_KEY"
    callback_field = "callback_url"
    models: ClassVar[Mapping[str, ModelSpec]] = {
        R2V: ModelSpec(
            name=R2V,
            provider=NAME,
            summary="Gemini Omni Flash reference-to-video: 1-6 images + prompt, native audio",
            modes=("image-to-video",),
            rules=(
                "prompt required",
                "images: 1-6, http(s), data:image, base64 or local file (PNG/JPEG/WebP)",
                "duration 3-10 or 'auto' (default 10)",
                "aspect_ratio 16:9 | 9:16 | auto",
                "callback_url: https, public host, <= 2048 chars",
            ),
            check=_check_r2v,
            typical_seconds=60.0,
            cost_estimate=102.34,  # credits_reserved for the default 10 s (the docs' example)
            cost_per_second=10.234,  # billed per video second: 102.34 credits for 10 s
            max_seconds=10,  # 'auto' may run to the longest
        ),
    }

    def build_submit_body(
        self, request: VideoRequest, options: CheckOptions = DEFAULT_CHECKS
    ) -> dict[str, Any]:
        self.validate(request, options)
        images = resolve_all(
            request.images,
            kind="image",
            accept_local=True,
            accept_data_url=True,
            accept_bare_base64=True,
            provider=NAME,
            model=request.model,
        )
        wire = request if images == request.images else attrs.evolve(request, images=images)
        body: dict[str, Any] = _conv.unstructure(wire)
        _RULES.merge_extra(body, request)
        return body

    def parse_submit(self, data: Any, request: VideoRequest) -> Task:
        task = self._task(data, "submit")
        return attrs.evolve(task, model=task.model or request.model)

    def parse_task(self, data: Any, *, model: str | None = None) -> Task:
        return self._task(data, "task", model)

    def _task(self, data: Any, what: str, model: str | None = None) -> Task:
        d = read(_conv, data, _Task)
        if d is None:
            raise self.malformed(what, repr(data)[:300])
        completed_at = from_unix(d.completed)
        expires = (completed_at or from_unix(d.created)) if d.results else None
        info = d.task_info or _TaskInfo()
        return Task(
            id=d.id,
            provider=NAME,
            model=d.model or model,
            status=map_status(d.status),
            progress=int(d.progress),
            created_at=from_unix(d.created),
            completed_at=completed_at,
            estimated_seconds=info.estimated_time,
            cost=d.cost,
            credits=d.usage.credits_reserved if d.usage else None,
            videos=tuple(
                Video(url=u, expires_at=expires + RESULT_TTL if expires else None)
                for u in d.results
            ),
            error=TaskError(code=d.error.code, message=d.error.message) if d.error else None,
            raw=data,
        )


register(EvoLink())
