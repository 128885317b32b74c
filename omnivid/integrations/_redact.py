"""Keep callback tokens out of access logs.

A callback token travels in the URL path, so web servers' access logs (``aiohttp.access``,
``uvicorn.access``) would record it. :class:`RedactTokens` rewrites every path segment shaped
like a token (43 URL-safe base64 characters) to ``<redacted>`` before the record is emitted.
A leaked token is of little use anyway (it only triggers one read-back of a task, and is
answered "duplicate" once confirmed), but secrets do not belong in logs.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactTokens", "redact", "redact_access_logs"]

_TOKEN_SEGMENT = re.compile(r"(?<=/)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
ACCESS_LOGGERS = ("aiohttp.access", "uvicorn.access", "gunicorn.access", "hypercorn.access")


def redact(text: str) -> str:
    """``text`` with every token-shaped path segment replaced by ``<redacted>``."""
    return _TOKEN_SEGMENT.sub("<redacted>", text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts token-shaped path segments from each record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_access_logs(*names: str) -> RedactTokens:
    """Install one :class:`RedactTokens` on the named loggers (default: the access loggers of
    aiohttp, uvicorn, gunicorn and hypercorn); idempotent. Returns the filter."""
    installed = RedactTokens()
    for name in names or ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(installed)
    return installed
