"""Turning ``images``/``videos`` entries (URLs, data URLs, bare base64, local paths) into wire
strings.

What an entry is follows from its text alone (:func:`omnivid._untrusted.media_source`), so only
an entry that reads as a local path is ever looked up on disk, and inline data is decoded and
checked by its bytes before any request.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

from .._untrusted import IMAGE_MIMES, image_problem, media_source, sniff_mime, video_data_problem
from ..errors import ValidationError

__all__ = ["IMAGE_MIMES", "VIDEO_MIMES", "MediaKind", "resolve_all", "resolve_media", "sniff_mime"]

MediaKind = str  # "image" or "video"

VIDEO_MIMES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
"""The video types omnivid recognises in local files (a data URL may be any ``video/...``)."""


def resolve_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    accept_local: bool,
    accept_data_url: bool,
    accept_bare_base64: bool = False,
    local_hint: str = "",
    provider: str,
    model: str,
) -> str:
    """Return the string to send for one media entry, or raise ``ValidationError``.

    URLs pass unchanged; data URLs and bare base64 are decoded and checked (images by their
    magic number; videos as any ``video/...`` type); local files are read, their type sniffed
    from the bytes, and encoded as a data URL when the provider accepts that.
    """

    def fail(rule: str) -> ValidationError:
        return ValidationError(field, value, rule, provider=provider, model=model)

    if not isinstance(value, str) or not value.strip():
        raise fail("must be a non-empty string: an http(s) URL, a data URL or a file path")
    source = media_source(value)
    if source == "url":
        if not urlsplit(value).netloc:
            raise fail("must be an http(s) URL with a host")
        return value
    if source == "other":
        raise fail(f"only http(s) URLs, data URLs or local file paths are accepted for {kind}s")
    if source == "data":
        if not accept_data_url:
            raise fail(f"{model} does not accept data URLs for {kind}s; {local_hint}".rstrip("; "))
        problem = image_problem(value) if kind == "image" else video_data_problem(value)
        if problem:
            raise fail(problem)
        return value
    if source == "base64":
        if not accept_bare_base64:
            hint = local_hint or f"use a data:{kind}/...;base64, URL"
            raise fail(f"{model} does not accept bare base64 for {kind}s; {hint}")
        problem = image_problem(value)
        if problem:
            raise fail(problem)
        return value
    if not accept_local:
        raise fail(f"{model} does not accept local files for {kind}s; {local_hint}".rstrip("; "))
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory, not a file") from None
    except OSError as exc:
        raise fail(f"cannot read file: {exc.strerror or exc}") from None
    allowed = IMAGE_MIMES if kind == "image" else VIDEO_MIMES
    mime = sniff_mime(data[:16])
    if mime is None or mime not in allowed:
        found = mime or "unrecognised content"
        raise fail(f"file type {found} is not accepted for {kind}s; use {_names(allowed)}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _names(mimes: frozenset[str]) -> str:
    return ", ".join(sorted(m.split("/")[1].upper() for m in mimes))


def resolve_all(
    values: tuple[str, ...],
    *,
    kind: MediaKind,
    accept_local: bool,
    accept_data_url: bool,
    accept_bare_base64: bool = False,
    local_hint: str = "",
    provider: str,
    model: str,
) -> tuple[str, ...]:
    """``resolve_media`` for every entry of ``images`` (kind "image") or ``videos`` ("video"),
    naming each one ``images[i]`` / ``videos[i]`` in errors."""
    if not values:
        return values
    return tuple(
        resolve_media(
            value,
            field=f"{kind}s[{i}]",
            kind=kind,
            accept_local=accept_local,
            accept_data_url=accept_data_url,
            accept_bare_base64=accept_bare_base64,
            local_hint=local_hint,
            provider=provider,
            model=model,
        )
        for i, value in enumerate(values)
    )
