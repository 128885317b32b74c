"""The FastAPI router: refusals through httpx's ASGI transport, real callbacks through a bridge."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from _hooks import NEVER_POLL, SCALE, bound_socket, evolink_request, serve
from aiohttp import web
from fastapi import FastAPI

from omnivid import AsyncClient, TaskStatus
from omnivid.integrations import CallbackReceiver
from omnivid.integrations.fastapi import callback_router
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def fastapi_receiver(sim: Simulator) -> AsyncIterator[tuple[CallbackReceiver, FastAPI]]:
    """A FastAPI app with the callback router, reachable by the simulator through a small
    aiohttp server that forwards each request to the app in-process (no uvicorn needed)."""
    sock = bound_socket()
    receiver = CallbackReceiver(
        f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/evolink", fallback_poll=NEVER_POLL
    )
    api = FastAPI()
    api.include_router(callback_router(receiver))
    transport = httpx.ASGITransport(app=api)

    async def forward(request: web.Request) -> web.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.post(request.path, content=await request.read())
        return web.Response(status=answer.status_code, body=answer.content)

    bridge = web.Application()
    bridge.router.add_post("/{tail:.*}", forward)
    async with serve(bridge, sock):
        yield receiver, api


def client_for(sim: Simulator, receiver: CallbackReceiver) -> AsyncClient:
    return AsyncClient(
        "evolink",
        base_url=sim.base_url("evolink"),
        api_key=sim.api_key,
        time_scale=SCALE,
        allow_private_callbacks=True,
        callbacks=receiver,
    )


async def test_real_callback_through_the_router_wakes_wait(sim: Simulator) -> None:
    """The simulator's callback reaches the FastAPI route and wait() returns at once."""
    async with fastapi_receiver(sim) as (receiver, _), client_for(sim, receiver) as client:
        task = await client.submit(evolink_request())
        done = await client.wait(task, timeout=5)
    assert done.status is TaskStatus.COMPLETED
    assert receiver.stats["confirmed"] == 1
    assert [a.result for a in sim.stats.callbacks] == [200]


async def test_router_refuses_forged_and_malformed_and_dedups(sim: Simulator) -> None:
    """Through the ASGI app: wrong token 403, malformed 400, replay 200 duplicate."""
    async with fastapi_receiver(sim) as (receiver, api), client_for(sim, receiver) as client:
        tokens: list[str] = []
        original = receiver.prepare

        def spy(fp: str, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
            token, out = original(fp, body)
            tokens.append(token or "")
            return token, out

        receiver.prepare = spy  # type: ignore[method-assign]
        task = await client.submit(evolink_request())
        await client.wait(task, timeout=5)
        body = json.dumps({"id": task.id, "status": "completed"}).encode()
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            forged = await http.post(f"/hooks/evolink/{secrets.token_urlsafe(32)}", content=body)
            malformed = await http.post(f"/hooks/evolink/{tokens[0]}", content=b"{")
            replay = await http.post(f"/hooks/evolink/{tokens[0]}", content=body)
            too_big = await http.post(f"/hooks/evolink/{tokens[0]}", content=b"x" * 70_000)
    assert forged.status_code == 403
    assert malformed.status_code == 400
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert too_big.status_code == 413
    assert tokens[0] not in forged.text + malformed.text + replay.text


async def test_router_is_left_out_of_the_openapi_schema(sim: Simulator) -> None:
    """The callback route is not advertised in the app's OpenAPI document."""
    async with fastapi_receiver(sim) as (_, api):
        assert not any(path.startswith("/hooks") for path in api.openapi()["paths"])


def test_core_integrations_do_not_import_fastapi() -> None:
    """omnivid and omnivid.integrations import without FastAPI."""
    code = (
        "import sys, omnivid, omnivid.integrations, omnivid.integrations.aiohttp;"
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
