"""Small checks that model specs compose; each raises ``ValidationError`` naming field and rule."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen

from .._models import VideoRequest
from ..errors import ValidationError

__all__ = ["Checker"]


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
        """Fields this model does not have."""
        for name in fields:
            value = getattr(request, name)
            if value not in (None, (), ""):
                rule = f"{self.model} has no {name} parameter"
                raise self.fail(name, value, f"{rule} ({why})" if why else rule)

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
        """HTTPS, a public host, at most 2048 characters (EvoLink's documented rules)."""
        if url is None:
            return
        if not isinstance(url, str):
            raise self.fail("callback_url", url, "must be a string (an https:// URL)")
        if len(url) > 2048:
            raise self.fail("callback_url", url, "must be at most 2048 characters")
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            raise self.fail("callback_url", url, "is not a valid URL") from None
        if allow_private and parts.scheme in ("http", "https") and host:
            return
        if parts.scheme != "https" or not host:
            raise self.fail("callback_url", url, "must be an https:// URL with a host")
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise self.fail("callback_url", url, "must point to a public host, not a local one")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return
        if not ip.is_global:
            raise self.fail(
                "callback_url", url, "must point to a public address, not a private one"
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
