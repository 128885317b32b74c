"""Helpers for the simulator tests: requests in each provider's format and JSON shapes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from omnivid.testing import Simulator

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"

EXT: dict[str, Any] = {"model": "Omni-Flash-Ext", "prompt": "a fox in the snow", "duration": 6}
GEMINI: dict[str, Any] = {"model": "gemini-omni-flash-preview", "prompt": "a red apple on a table"}
EVO: dict[str, Any] = {
    "model": "gemini-omni-flash-reference-to-video",
    "prompt": "the cat walks",
    "image_urls": ["https://example.com/cat.png"],
}
BODIES = {"apimart": EXT, "evolink": EVO}


def seed(name: str) -> Any:
    """A fixture payload from tests/fixtures/seeds."""
    return json.loads((SEEDS / name).read_text(encoding="utf-8"))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def body(provider: str, prompt_suffix: str = "", **changes: Any) -> dict[str, Any]:
    """A valid submit body for ``provider`` with markers appended to the prompt."""
    result = dict(BODIES[provider], **changes)
    result["prompt"] = f"{result['prompt']} {prompt_suffix}".strip()
    return result


async def submit(
    http: aiohttp.ClientSession,
    sim: Simulator,
    provider: str,
    payload: Any,
    *,
    key: str | None = None,
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """POST a submit body; the response is read (``await resp.json()`` still works)."""
    url = f"{sim.base_url(provider)}/v1/videos/generations"
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    async with http.post(url, data=data, headers=auth(key or sim.api_key), **kwargs) as resp:
        await resp.read()
        return resp


async def poll(
    http: aiohttp.ClientSession, sim: Simulator, provider: str, task_id: str, **kwargs: Any
) -> aiohttp.ClientResponse:
    """GET a task; the response is read."""
    url = f"{sim.base_url(provider)}/v1/tasks/{task_id}"
    headers = kwargs.pop("headers", auth(sim.api_key))
    async with http.get(url, headers=headers, **kwargs) as resp:
        await resp.read()
        return resp


async def create(http: aiohttp.ClientSession, sim: Simulator, provider: str, **changes: Any) -> str:
    """Submit a valid task and return its id."""
    prompt_suffix = changes.pop("markers", "")
    resp = await submit(http, sim, provider, body(provider, prompt_suffix, **changes))
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return str(data["data"][0]["task_id"] if provider == "apimart" else data["id"])


def task_data(provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The task object of a task-status body (APIMart wraps it in ``data``)."""
    return payload["data"] if provider == "apimart" else payload


async def wait_status(
    http: aiohttp.ClientSession,
    sim: Simulator,
    provider: str,
    task_id: str,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Poll until the task reaches one of ``statuses``; returns the whole body."""
    async with asyncio.timeout(timeout):
        while True:
            resp = await poll(http, sim, provider, task_id)
            payload: dict[str, Any] = await resp.json()
            if task_data(provider, payload)["status"] in statuses:
                return payload
            await asyncio.sleep(0.01)


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value kinds, list items by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
