"""APIMart: ``gemini-omni-flash-preview`` and ``Omni-Flash-Ext``.

Wire format: bodies wrapped as ``{"code": 200, "data": ...}``; submit answers a *list* of
``{"status": "submitted", "task_id": ...}``; errors are ``{"error": {"code": <int>, ...}}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from attrs import define

from .._models import Task, TaskError, Video, VideoRequest
from ._base import DEFAULT_CHECKS, CheckOptions, ModelSpec, Provider, register
from ._media import resolve_all
from ._rules import Checker
from ._wire import from_unix, make_converter, map_status, read

__all__ = ["APIMart"]

NAME = "apimart"
GEMINI = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
_URL_ONLY_IMAGES = "upload the image and pass its public http(s) URL"


@define
class _SubmitItem:
    task_id: str
    status: str = "submitted"


@define
class _Submit:
    data: list[_SubmitItem]


@define
class _WireVideo:
    url: list[str] | str
    expires_at: float | None = None


@define
class _WireResult:
    videos: list[_WireVideo] = attrs.Factory(list)


@define
class _WireError:
    code: str = "task_failed"
    message: str = ""


@define
class _TaskData:
    id: str
    status: str
    progress: int = 0
    created: float | None = None
    completed: float | None = None
    estimated_time: float | None = None
    actual_time: float | None = None
    cost: float | None = None
    credits_cost: float | None = None
    model: str | None = None
    result: _WireResult | None = None
    error: _WireError | None = None


@define
class _TaskEnvelope:
    data: _TaskData


_conv = make_converter(
    {"images": "image_urls", "videos": "video_urls", "extend_from": "extend_from_task_id"}
)


def _url_or_urls(value: Any, _: Any) -> list[str] | str:
    return value if isinstance(value, str) else [str(u) for u in value]


_conv.register_structure_hook(list[str] | str, _url_or_urls)


_RULES = {GEMINI: Checker(NAME, GEMINI), EXT: Checker(NAME, EXT)}  # built once per model
_ASPECTS = ("16:9", "9:16")


def _check_gemini(request: VideoRequest, options: CheckOptions) -> None:
    c = _RULES[GEMINI]
    c.common(request)
    c.prompt(request, required=False)
    if not (request.prompt or "").strip() and not request.images and not request.videos:
        raise c.fail("prompt", request.prompt, f"{GEMINI} needs a prompt, images or a video")
    c.forbid(request, "generation_type", "callback_url", "size")
    c.forbid(request, "duration", why="the model picks 3-10 s itself")
    if len(request.images) > 16:
        raise c.fail("images", f"{len(request.images)} item(s)", f"{GEMINI} accepts at most 16")
    if len(request.videos) > 1:
        raise c.fail("videos", f"{len(request.videos)} item(s)", f"{GEMINI} accepts at most 1")
    aspect = request.aspect_ratio
    if aspect is not None and aspect not in _ASPECTS:
        raise c.fail(
            "aspect_ratio",
            aspect,
            f"{GEMINI} accepts 16:9 or 9:16; the server would render any other value as 16:9",
        )
    c.choice("resolution", request.resolution, ["720p"], case_insensitive=True)


def _check_ext(request: VideoRequest, options: CheckOptions) -> None:
    c = _RULES[EXT]
    c.common(request)
    c.prompt(request)
    c.forbid(request, "extend_from", "callback_url")
    c.choice("duration", request.duration, [4, 6, 8, 10])
    c.choice("resolution", request.resolution, ["720p", "1080p", "4k"], case_insensitive=True)
    c.choice("aspect_ratio", request.aspect_ratio, _ASPECTS)
    c.choice("size", request.size, _ASPECTS)
    c.choice("generation_type", request.generation_type, ["frame", "reference"])
    n = len(request.images)
    if request.generation_type == "frame":
        c.count("images", request.images, [1], "generation_type='frame' takes exactly 1 image")
    elif request.generation_type == "reference":
        c.count("images", request.images, [1, 3], "generation_type='reference' takes 1 or 3 images")
    elif n not in (0, 1, 3):
        c.count("images", request.images, [0, 1, 3], f"{EXT} accepts 0, 1 or 3 images")
    if len(request.videos) > 1:
        raise c.fail("videos", f"{len(request.videos)} item(s)", f"{EXT} accepts 0 or 1 video")
    if request.videos and request.duration is not None:
        raise c.fail(
            "duration", request.duration, f"{EXT} does not take duration together with videos"
        )
    size, aspect = request.size, request.aspect_ratio
    if size is not None and aspect is not None and size != aspect:
        warnings.warn(
            f"size={size!r} differs from aspect_ratio={aspect!r}: {EXT} reads size as an alias "
            "of aspect_ratio and advises keeping them equal; both are sent as given",
            UserWarning,
            stacklevel=2,
        )


class APIMart(Provider):
    """APIMart's aggregator API (``https://api.apimart.ai``, key in ``APIMART_API_KEY``)."""

    name = NAME
    base_url = "https://api.apimart.ai"
    env_var = "APIMART_API_KEY"
    status_languages = ("zh", "en", "ko", "ja")  # GET /v1/tasks/{id}?language=...
    models: ClassVar[Mapping[str, ModelSpec]] = {
        GEMINI: ModelSpec(
            name=GEMINI,
            provider=NAME,
            summary="Gemini Omni Flash: text/image/video to 720p video with audio, multi-turn",
            modes=("text-to-video", "image-to-video", "video-to-video", "extend"),
            rules=(
                "prompt or images/videos required",
                "images: up to 16 http(s) URLs (JPEG/PNG)",
                "videos: at most 1, http(s), data:video or local file",
                "aspect_ratio 16:9 | 9:16 (the server renders others as 16:9); 720p only",
                "extend_from: an earlier task id",
            ),
            check=_check_gemini,
            typical_seconds=60.0,
            cost_estimate=1.0,
        ),
        EXT: ModelSpec(
            name=EXT,
            provider=NAME,
            summary="Omni-Flash-Ext: text/image/video to video, 720p/1080p/4k, 4-10 s",
            modes=("text-to-video", "image-to-video", "video-to-video", "image-fusion"),
            rules=(
                "prompt required",
                "duration 4 | 6 | 8 | 10 (not with videos)",
                "resolution 720p | 1080p | 4k; aspect_ratio 16:9 | 9:16",
                "size: alias of aspect_ratio (a different value is sent, with a warning)",
                "images 0, 1 or 3 public URLs; frame = exactly 1; reference = 1 or 3",
                "videos: 0 or 1 public http(s) URL",
            ),
            check=_check_ext,
            typical_seconds=240.0,
            cost_estimate=0.4,
        ),
    }

    def build_submit_body(
        self, request: VideoRequest, options: CheckOptions = DEFAULT_CHECKS
    ) -> dict[str, Any]:
        self.validate(request, options)
        model = request.model
        images = resolve_all(
            request.images,
            kind="image",
            accept_local=False,
            accept_data_url=False,
            local_hint=_URL_ONLY_IMAGES,
            provider=NAME,
            model=model,
        )
        videos = resolve_all(
            request.videos,
            kind="video",
            accept_local=model == GEMINI,
            accept_data_url=model == GEMINI,
            local_hint="upload the video and pass its public http(s) URL",
            provider=NAME,
            model=model,
        )
        same = images == request.images and videos == request.videos  # URLs pass unchanged
        wire = request if same else attrs.evolve(request, images=images, videos=videos)
        body: dict[str, Any] = _conv.unstructure(wire)
        if isinstance(body.get("resolution"), str):
            body["resolution"] = body["resolution"].lower()
        _RULES[model].merge_extra(body, request)
        return body

    def parse_submit(self, data: Any, request: VideoRequest) -> Task:
        parsed = read(_conv, data, _Submit)
        if parsed is None or not parsed.data:
            raise self.malformed("submit", repr(data)[:300], model=request.model)
        item = parsed.data[0]
        return Task(
            id=item.task_id,
            provider=NAME,
            model=request.model,
            status=map_status(item.status),
            raw=data,
        )

    def parse_task(self, data: Any, *, model: str | None = None) -> Task:
        parsed = read(_conv, data, _TaskEnvelope)
        if parsed is None:
            raise self.malformed("task", repr(data)[:300])
        d = parsed.data
        videos: list[Video] = []
        for v in d.result.videos if d.result else []:
            urls = [v.url] if isinstance(v.url, str) else v.url
            videos.extend(Video(url=u, expires_at=from_unix(v.expires_at)) for u in urls)
        return Task(
            id=d.id,
            provider=NAME,
            model=d.model or model,
            status=map_status(d.status),
            progress=int(d.progress),
            created_at=from_unix(d.created),
            completed_at=from_unix(d.completed),
            estimated_seconds=d.estimated_time,
            actual_seconds=d.actual_time,
            cost=d.cost,
            credits=d.credits_cost,
            videos=tuple(videos),
            error=TaskError(code=d.error.code, message=d.error.message) if d.error else None,
            raw=data["data"],
        )

    def task_from_raw(self, raw: Any, *, model: str | None = None) -> Task:
        return self.parse_task({"data": raw}, model=model)


register(APIMart())
