"""The callback receiver as a FastAPI ``APIRouter`` (needs FastAPI, in the ``dev`` extra).

::

    receiver = CallbackReceiver("https://app.example.com/omnivid/callbacks")
    app.include_router(callback_router(receiver))   # POST /omnivid/callbacks/{token}

The route is left out of the OpenAPI schema; the body is read in chunks and cut off past
``receiver.max_body`` (answered 413).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ._callbacks import CallbackReceiver

__all__ = ["callback_router", "read_limited"]


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, stopping once it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def callback_router(receiver: CallbackReceiver, *, path: str | None = None) -> APIRouter:
    """A router with ``POST {path}/{token}``; ``path`` defaults to the path of
    ``receiver.public_url`` (behind a proxy that rewrites paths, give the local one)."""
    prefix = (receiver.path if path is None else path).rstrip("/")
    router = APIRouter()

    @router.post(prefix + "/{token}", include_in_schema=False)
    async def omnivid_callback(token: str, request: Request) -> JSONResponse:
        body = await read_limited(request, receiver.max_body)
        reply = await receiver.handle(token, body)
        return JSONResponse(dict(reply.body), status_code=reply.status)

    return router
