"""The callback receiver as an aiohttp handler or sub-application.

::

    receiver = CallbackReceiver("https://app.example.com/omnivid/callbacks")
    app.add_subapp("/omnivid/callbacks/", callback_app(receiver))
    # or: app.router.add_post("/omnivid/callbacks/{token}", callback_handler(receiver))

The body is read in chunks and cut off past ``receiver.max_body`` (answered 413).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ._callbacks import CallbackReceiver

__all__ = ["callback_app", "callback_handler", "read_limited"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, stopping once it exceeds ``limit`` bytes (then ``limit + 1`` bytes or
    more are returned, so the caller can tell)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def callback_handler(receiver: CallbackReceiver) -> Handler:
    """A handler for ``POST .../{token}`` routes answering callbacks for ``receiver``."""

    async def omnivid_callback(request: web.Request) -> web.StreamResponse:
        body = await read_limited(request, receiver.max_body)
        reply = await receiver.handle(request.match_info.get("token", ""), body)
        return web.json_response(dict(reply.body), status=reply.status)

    return omnivid_callback


def callback_app(receiver: CallbackReceiver) -> web.Application:
    """A sub-application with the single route ``POST /{token}``; mount it at the path of
    ``receiver.public_url`` (``app.add_subapp(receiver.path + "/", callback_app(receiver))``)."""
    app = web.Application()
    app.router.add_post("/{token}", callback_handler(receiver))
    return app
