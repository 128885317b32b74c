"""Small checks that model specs compose; each raises ``ValidationError`` naming field and rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import frozen

from .._models import VideoRequest
from .._untrusted import split_url
from ..errors import ValidationError

__all__ = ["NAMED_FIELD", "Checker"]

NAMED_FIELD: dict[str, str] = {
    **{name: name for name in ("model", "prompt", "images", "videos", "extend_from")},
    **{name: name for name in ("duration", "aspect_ratio", "size", "resolution")},
    **{name: name for name in ("generation_type", "callback_url")},
    "image_urls": "images",
    "video_urls": "videos",
    "extend_from_task_id": "extend_from",
}
"""Every field the providers document, by its wire name (and omnivid's), with the
``VideoRequest`` field that sets it: ``extra`` may not carry them."""


def one_of(values: Iterable[object]) -> str:
    """``4, 6, 8 or 10`` from ``[4, 6, 8, 10]``."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


@frozen
class Checker:
    """Rule helpers bound to one provider and model, so messages carry that context."""

    provider: str
    model: str

    def fail(self, field: str, value: Any, rule: str) -> ValidationError:
        """A ``ValidationError`` for this model."""
        return ValidationError(field, value, rule, provider=self.provider, model=self.model)

    def forbid(self, request: VideoRequest, *fields: str, why: str = "") -> None:
        """Fields this model does not have (an empty string counts as set: it would be sent)."""
        for name in fields:
            value = getattr(request, name)
            if value is not None and value != ():
                rule = f"{self.model} has no {name} parameter"
                raise self.fail(name, value, f"{rule} ({why})" if why else rule)

    def common(self, request: VideoRequest) -> None:
        """Checks every model shares: ``extend_from`` is a task id, ``extra`` holds no
        documented field (those get their checks only as named fields)."""
        value = request.extend_from
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail("extend_from", value, "must be a non-empty task id string")
        for key, item in request.extra.items():
            named = NAMED_FIELD.get(key)
            if named is None:
                continue
            if getattr(request, named) not in (None, ()):
                raise self.fail(f"extra.{key}", item, f"already set by a named field ({named})")
            raise self.fail(
                f"extra.{key}", item, f"{key} is documented: use the named field {named}"
            )

    def prompt(self, request: VideoRequest, *, required: bool = True) -> None:
        """A prompt must be a non-empty string (when required)."""
        if request.prompt is not None and not isinstance(request.prompt, str):
            raise self.fail("prompt", request.prompt, "must be a string")
        if required and not (request.prompt or "").strip():
            raise self.fail("prompt", request.prompt, f"{self.model} requires a non-empty prompt")

    def choice(
        self, field: str, value: Any, allowed: Iterable[Any], *, case_insensitive: bool = False
    ) -> None:
        """``value`` (when set) must be one of ``allowed``."""
        if value is None:
            return
        options = list(allowed)
        probe = value.lower() if case_insensitive and isinstance(value, str) else value
        pool = [o.lower() if isinstance(o, str) else o for o in options]
        if isinstance(probe, bool) or probe not in pool:
            raise self.fail(field, value, f"{self.model} accepts {one_of(options)}")

    def count(self, field: str, items: tuple[str, ...], allowed: Iterable[int], why: str) -> None:
        """The number of ``items`` must be one of ``allowed``."""
        if len(items) not in set(allowed):
            raise self.fail(field, f"{len(items)} item(s)", why)

    def callback_url(self, url: str | None, *, allow_private: bool) -> None:
        """HTTPS, a public host in any spelling, at most 2048 characters (EvoLink's rules)."""
        if url is None:
            return
        if not isinstance(url, str):
            raise self.fail("callback_url", url, "must be a string (an https:// URL)")
        if len(url) > 2048:
            raise self.fail("callback_url", url, "must be at most 2048 characters")
        try:
            scheme, raw, host = split_url(url)
        except ValueError as exc:
            raise self.fail("callback_url", url, f"is not a valid URL: {exc}") from None
        if allow_private and scheme in ("http", "https") and host.kind != "invalid":
            return
        if scheme != "https" or not raw:
            raise self.fail("callback_url", url, "must be an https:// URL with a host")
        if host.kind == "invalid":
            raise self.fail("callback_url", url, f"is not a valid URL: bad host {raw!r}")
        if host.kind == "public":
            return
        if host.address is None:
            raise self.fail("callback_url", url, "must point to a public host, not a local one")
        spelled = "" if raw == str(host.address) else f" ({raw} is {host.address})"
        raise self.fail(
            "callback_url",
            url,
            f"must point to a public address, not a private or loopback one{spelled}",
        )

    def merge_extra(self, body: dict[str, Any], request: VideoRequest) -> None:
        """Add ``request.extra`` to ``body``; it may not override a named field."""
        if not request.extra:
            return
        clash = sorted(set(request.extra) & set(body))
        if clash:
            name = clash[0]
            raise self.fail(f"extra.{name}", request.extra[name], "already set by a named field")
        body.update(request.extra)
