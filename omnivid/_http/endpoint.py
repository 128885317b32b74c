"""Where a provider account's API lives: ``base_url=``, else ``OMNIVID_<PROVIDER>_BASE_URL``,
else the provider's public URL.

One rule for the client and the command line alike. A base URL is an ``http(s)`` URL with a
host, no query and no fragment (paths such as ``/v1/tasks/...`` are appended to it); a trailing
slash is dropped. A malformed one is refused before any request, naming where it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..providers import Provider

__all__ = [
    "base_url_env_var",
    "base_url_problem",
    "checked_base_url",
    "env_base_url",
    "resolve_base_url",
    "shown_url",
]


def base_url_env_var(provider: str) -> str:
    """The environment variable overriding ``provider``'s base URL."""
    return f"OMNIVID_{provider.upper()}_BASE_URL"


def base_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a base URL, or None if it is usable."""
    if not url.startswith(("http://", "https://")):
        return "must be an http(s) URL"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment (API paths are appended to it)"
    return None


def shown_url(url: str) -> str:
    """``url`` as errors and logs may show it: any ``user:password@`` replaced by ``***@``."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def checked_base_url(url: str, *, source: str, provider: str | None = None) -> str:
    """``url`` without its trailing slash; a :class:`ConfigurationError` naming ``source``
    (``base_url`` or the variable) if it is malformed."""
    problem = base_url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"{source}={shown_url(url)!r}: {problem}", provider=provider)
    return url.rstrip("/")


def env_base_url(provider: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The base URL set for ``provider`` in the environment (:func:`base_url_env_var`), or
    None when the variable is unset or empty; checked like any base URL."""
    var = base_url_env_var(provider)
    value = (os.environ if environ is None else environ).get(var, "").strip()
    return checked_base_url(value, source=var, provider=provider) if value else None


def resolve_base_url(
    provider: Provider,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The base URL to use for ``provider``: ``base_url`` if given, else the environment
    variable (:func:`base_url_env_var`) if set, else the provider's public URL."""
    if base_url:
        return checked_base_url(base_url, source="base_url", provider=provider.name)
    return env_base_url(provider.name, environ) or provider.base_url.rstrip("/")
