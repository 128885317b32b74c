"""Turning ``images``/``videos`` entries (URLs, data URLs, local paths) into wire strings."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from ..errors import ValidationError

__all__ = ["MediaKind", "resolve_all", "resolve_media", "sniff_mime"]

MediaKind = str  # "image" or "video"

_IMAGE_MIMES = {"image/jpeg", "image/png", "image/webp"}
_VIDEO_MIMES = {"video/mp4", "video/quicktime", "video/webm"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(;[^,]*)?,", re.IGNORECASE)
_BARE_B64 = re.compile(r"^[A-Za-z0-9+/\s]{64,}={0,2}$")


def sniff_mime(head: bytes) -> str | None:
    """The media type of a file from its first bytes: JPEG, PNG, WebP or MP4/MOV, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    return None


def resolve_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    allowed_mimes: frozenset[str],
    accept_local: bool,
    accept_data_url: bool,
    accept_bare_base64: bool = False,
    local_hint: str = "",
    provider: str,
    model: str,
) -> str:
    """Return the string to send for one media entry, or raise ``ValidationError``.

    URLs pass unchanged; data URLs are checked for their type; local files are read, their type
    sniffed from the bytes, and encoded as a data URL when the provider accepts that.
    """

    def fail(rule: str) -> ValidationError:
        return ValidationError(field, value, rule, provider=provider, model=model)

    if not isinstance(value, str) or not value.strip():
        raise fail("must be a non-empty string: an http(s) URL, a data URL or a file path")
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        return value
    match = _DATA_URL.match(value)
    if match:
        mime = match.group("mime").lower()
        if not accept_data_url:
            raise fail(f"{model} does not accept data URLs for {kind}s; {local_hint}".rstrip("; "))
        if mime not in allowed_mimes:
            raise fail(f"{kind} type {mime} is not accepted; use {_names(allowed_mimes)}")
        return value
    if "://" in value:
        raise fail(f"only http(s) URLs, data URLs or local file paths are accepted for {kind}s")
    if accept_bare_base64 and _BARE_B64.match(value) and not Path(value).exists():
        return value
    path = Path(value).expanduser()
    if not accept_local:
        raise fail(f"{model} does not accept local files for {kind}s; {local_hint}".rstrip("; "))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory, not a file") from None
    except OSError as exc:
        raise fail(f"cannot read file: {exc.strerror or exc}") from None
    mime = sniff_mime(data[:16])
    if mime is None or mime not in allowed_mimes:
        found = mime or "unrecognised content"
        raise fail(f"file type {found} is not accepted for {kind}s; use {_names(allowed_mimes)}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _names(mimes: frozenset[str]) -> str:
    return ", ".join(sorted(m.split("/")[1].upper() for m in mimes))


IMAGE_MIMES = frozenset(_IMAGE_MIMES)
VIDEO_MIMES = frozenset(_VIDEO_MIMES)


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
    allowed = IMAGE_MIMES if kind == "image" else VIDEO_MIMES
    return tuple(
        resolve_media(
            value,
            field=f"{kind}s[{i}]",
            kind=kind,
            allowed_mimes=allowed,
            accept_local=accept_local,
            accept_data_url=accept_data_url,
            accept_bare_base64=accept_bare_base64,
            local_hint=local_hint,
            provider=provider,
            model=model,
        )
        for i, value in enumerate(values)
    )
