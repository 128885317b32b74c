"""Request validation: every documented rule of the three models, with the documented error.

`validate` returns the normalized facts the simulator needs (`Accepted`) or raises `ApiError`.
Rules the documents leave open get a plausible 400 ``invalid_request_error``; each such choice
is marked "(sim)" below.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs

from .._untrusted import image_problem, split_url, video_data_problem
from ._config import APIMART, EVOLINK_MODEL, GEMINI_PREVIEW, MODELS, OMNI_FLASH_EXT
from ._wire import ApiError

MAX_CALLBACK_URL = 2048
_EXT_DURATIONS = (4, 6, 8, 10)
_EXT_RESOLUTIONS = ("720p", "1080p", "4k")
_ASPECTS = ("16:9", "9:16")


@attrs.frozen
class Accepted:
    """What a valid submit asks for, normalized."""

    model: str
    prompt: str
    duration: int | None = None  # EvoLink: None means "auto"
    callback_url: str | None = None
    extend_from_task_id: str | None = None


def _invalid(detail: str | None, apimart_type: str | None = None) -> ApiError:
    return ApiError("invalid_request", detail, apimart_type)


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _string_list(body: dict[str, Any], field: str) -> list[str]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"{field} must be an array of strings")
    return value


def _int(value: object) -> int | None:
    """``value`` as an int if it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _prompt(body: dict[str, Any], *, required: bool) -> str:
    prompt = body.get("prompt")
    if prompt is None and not required:
        return ""
    if not isinstance(prompt, str) or (required and not prompt.strip()):
        raise _invalid("prompt is required and must be a non-empty string")
    return prompt


def _aspect(body: dict[str, Any], field: str, allowed: tuple[str, ...]) -> None:
    value = body.get(field)
    if value is not None and value not in allowed:  # (sim) undocumented values are refused
        raise _invalid(f"{field} must be one of {', '.join(allowed)}")


def _validate_omni_flash_ext(body: dict[str, Any]) -> Accepted:
    prompt = _prompt(body, required=True)
    images = _string_list(body, "image_urls")
    videos = _string_list(body, "video_urls")
    duration = body.get("duration")
    if duration is not None and videos:
        raise _invalid("duration and video_urls must not be sent together")
    if duration is not None and _int(duration) not in _EXT_DURATIONS:
        raise _invalid(f"invalid duration {duration}, must be one of 4/6/8/10", "invalid_duration")
    resolution = body.get("resolution")
    if resolution is not None and (
        not isinstance(resolution, str) or resolution.lower() not in _EXT_RESOLUTIONS
    ):
        raise _invalid(
            f"invalid resolution {resolution}, must be one of 720p/1080p/4k", "invalid_resolution"
        )
    _aspect(body, "aspect_ratio", _ASPECTS)
    _aspect(body, "size", _ASPECTS)
    generation_type = body.get("generation_type")
    if generation_type not in (None, "frame", "reference"):
        raise _invalid("generation_type must be frame or reference")
    # frame: exactly 1; reference: 1 or 3; unspecified: 0, 1 or 3 (the fusion example sends 3
    # images without generation_type). 2 and (sim) 4+ are refused.
    allowed = {"frame": (1,), "reference": (1, 3)}.get(str(generation_type), (0, 1, 3))
    if len(images) not in allowed:
        raise _invalid(
            f"unsupported image count {len(images)} for generation_type {generation_type}",
            "unsupported_image_count",
        )
    if not all(_is_http_url(url) for url in images):
        raise _invalid("image_urls must be public http(s) URLs")
    if len(videos) > 1:
        raise _invalid(f"unsupported video count {len(videos)}", "unsupported_video_count")
    if not all(_is_http_url(url) for url in videos):
        raise _invalid("video_urls must be public http(s) URLs")
    return Accepted(model=OMNI_FLASH_EXT, prompt=prompt, duration=_int(duration) or 6)


def _validate_gemini(body: dict[str, Any]) -> Accepted:
    prompt = _prompt(body, required=False)
    images = _string_list(body, "image_urls")
    videos = _string_list(body, "video_urls")
    if not prompt.strip() and not images and not videos:
        raise _invalid("prompt or reference media (image_urls/video_urls) is required")
    if len(images) > 16:
        raise _invalid("at most 16 image_urls are supported")
    if not all(_is_http_url(url) for url in images):
        raise _invalid("image_urls must be http(s) URLs")
    if len(videos) > 1:
        raise _invalid("at most 1 video_urls entry is supported")
    if not all(_is_http_url(url) or not video_data_problem(url) for url in videos):
        raise _invalid("video_urls must be http(s) URLs or data:video/...;base64, URLs")
    aspect = body.get("aspect_ratio")
    if aspect is not None and not isinstance(aspect, str):  # other strings mean 16:9
        raise _invalid("aspect_ratio must be a string")
    resolution = body.get("resolution")
    if resolution is not None and (not isinstance(resolution, str) or resolution.lower() != "720p"):
        raise _invalid("resolution only supports 720p")
    extend = body.get("extend_from_task_id")
    if extend is not None and (not isinstance(extend, str) or not extend):
        raise _invalid("extend_from_task_id must be a task_id string")
    return Accepted(model=GEMINI_PREVIEW, prompt=prompt, extend_from_task_id=extend)


def _is_image_reference(value: str) -> bool:
    """An http(s) URL, or inline PNG/JPEG/WebP (a ``;base64`` data URL or bare base64) whose
    bytes are what it claims."""
    return _is_http_url(value) or image_problem(value) is None


def callback_url_problem(url: object, *, allow_loopback: bool) -> str | None:
    """Why EvoLink would refuse ``url`` as a callback, or None if it is acceptable. A host
    counts in any spelling a browser or ``inet_aton`` reads (``127.1``, ``2130706433``,
    ``0x7f.1``, ``[::ffff:127.0.0.1]``, ``*.localhost``)."""
    if not isinstance(url, str) or not url:
        return "callback_url must be a non-empty string"
    if len(url) > MAX_CALLBACK_URL:
        return f"callback_url must be at most {MAX_CALLBACK_URL} characters"
    try:
        scheme, raw, host = split_url(url)
    except ValueError:
        return "callback_url is not a valid URL"
    if not raw or host.kind == "invalid":
        return "callback_url must be an absolute URL with a valid host"
    if allow_loopback and host.kind == "loopback" and scheme in ("http", "https"):
        return None
    if scheme != "https":
        return "callback_url must use https"
    if host.kind != "public":
        return "callback_url must not point to a private or loopback address"
    return None


def _validate_evolink(body: dict[str, Any], allow_loopback: bool) -> Accepted:
    prompt = _prompt(body, required=True)
    images = _string_list(body, "image_urls")
    if not 1 <= len(images) <= 6:
        raise _invalid("image_urls must contain 1 to 6 images")
    if not all(_is_image_reference(image) for image in images):
        raise _invalid("image_urls entries must be http(s) URLs, data:image URLs or base64 images")
    duration = body.get("duration", 10)
    if duration != "auto" and not 3 <= (_int(duration) or 0) <= 10:
        raise _invalid("duration must be an integer from 3 to 10 or 'auto'")
    _aspect(body, "aspect_ratio", (*_ASPECTS, "auto"))
    callback = body.get("callback_url")
    if callback is not None:
        problem = callback_url_problem(callback, allow_loopback=allow_loopback)
        if problem:
            raise _invalid(problem)
    return Accepted(
        model=EVOLINK_MODEL,
        prompt=prompt,
        duration=None if duration == "auto" else _int(duration),
        callback_url=callback,
    )


def validate(provider: str, body: object, *, allow_loopback_callbacks: bool) -> Accepted:
    """Check a submit body against the provider's documented rules."""
    if not isinstance(body, dict):
        raise _invalid(None)
    model = body.get("model")
    if model not in MODELS[provider]:
        raise _invalid(f"model must be one of {', '.join(MODELS[provider])}")
    if provider == APIMART:
        return _validate_omni_flash_ext(body) if model == OMNI_FLASH_EXT else _validate_gemini(body)
    return _validate_evolink(body, allow_loopback_callbacks)
