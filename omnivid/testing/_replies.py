"""How the simulator answers an API request, faults included.

A handler describes its answer as a `Reply` (a status with a JSON body or a text page, or a
connection to drop); `send` writes it, applying the request's `RequestFaults` on the way (a
delay, a lost response, a JSON body cut in half) or closing the connection unanswered (with a
TCP reset if asked). `error_reply` is the provider's documented error body for an
`ApiError` (with ``Retry-After`` on a 429) and `fault_reply` the answer to a fault that stops a
request before it is processed (a reset, a 429, a 500 body or an nginx gateway page). Each
request's `Exchange`, kept in a context variable, holds its ``X-Request-Id`` (added to every
response by `add_request_id`) and whether its connection was dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import json
import math
import socket
import struct
import time
import uuid
from contextlib import suppress

import attrs
from aiohttp import web

from ._config import Language, SimConfig
from ._faults import RequestFaults
from ._state import format_retry_after
from ._wire import JSON, ApiError, error_body, error_status

_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


@attrs.define
class Exchange:
    """Per-request bookkeeping shared by the middleware, the handler and the prepare hook."""

    request_id: str = attrs.field(factory=lambda: f"req_{uuid.uuid4().hex}")
    dropped: bool = False


EXCHANGE: contextvars.ContextVar[Exchange] = contextvars.ContextVar("omnivid_sim_exchange")


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """The ``on_response_prepare`` hook: the exchange's ``X-Request-Id`` on every response."""
    exchange = EXCHANGE.get(None)
    if exchange is not None:
        response.headers.setdefault("X-Request-Id", exchange.request_id)


@attrs.define
class Reply:
    status: int
    body: JSON | None = None
    text: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    drop: str | None = None  # "reset" or "close"


def error_reply(
    config: SimConfig,
    provider: str,
    error: ApiError,
    model: str = "",
    language: Language | None = None,
) -> Reply:
    """The provider's error answer for ``error`` (``Retry-After`` as configured on a 429);
    APIMart's message in ``language`` (default: the configured one)."""
    headers = {}
    if error.kind == "rate_limited" and config.retry_after is not None:
        seconds = config.retry_after_seconds
        if config.retry_after == "seconds":
            headers["Retry-After"] = format_retry_after(seconds)
        else:
            when = math.ceil(time.time() + seconds)
            headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
    body = error_body(provider, error, language=language or config.language, model=model)
    return Reply(error_status(error), body=body, headers=headers)


def fault_reply(
    config: SimConfig, provider: str, pre: str, language: Language | None = None
) -> Reply:
    """The answer to a fault that stops a request unprocessed (`RequestFaults.pre`)."""
    if pre == "reset":
        return Reply(0, drop="reset")
    if pre == "429":
        return error_reply(config, provider, ApiError("rate_limited"), language=language)
    status = int(pre)
    if status == 500:
        return error_reply(config, provider, ApiError("internal"), language=language)
    reason = _REASONS.get(status, "Server Error")
    page = _GATEWAY_PAGE.format(status=status, reason=reason)
    return Reply(status, text=page, headers={"Content-Type": "text/html"})


async def send(request: web.Request, reply: Reply, faults: RequestFaults) -> web.Response:
    """Write ``reply``, suffering the request's slow, lost-response and malformed faults."""
    if faults.slow:
        await asyncio.sleep(faults.slow)
    if faults.lost_response and reply.drop is None:
        reply.drop = "close"
    if reply.drop is not None:
        return _drop(request, reset=reply.drop == "reset")
    headers = dict(reply.headers)
    if reply.body is not None:
        text = json.dumps(reply.body, ensure_ascii=False)
        if faults.malformed:
            text = text[: len(text) // 2]
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
    else:
        text = reply.text or ""
    return web.Response(status=reply.status, body=text.encode(), headers=headers)


def _drop(request: web.Request, *, reset: bool) -> web.Response:
    """Close the connection without answering (TCP RST if ``reset``)."""
    EXCHANGE.get().dropped = True
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with suppress(OSError):
                    linger = struct.pack("ii", 1, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            transport.abort()
        else:
            transport.close()
    return web.Response(status=500)
