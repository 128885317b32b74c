"""examples/aiohttp_app.py, served on loopback against the simulator."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _examples import (
    EVOLINK_FOX,
    FOX,
    FileSpy,
    bound_socket,
    env_for,
    load_example,
    local_files,
    poll_json,
    until,
)
from aiohttp import web

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

GEMINI = "gemini-omni-flash-preview"

example = load_example("aiohttp_app")


@asynccontextmanager
async def running(
    env: dict[str, str], sock: socket.socket | None = None
) -> AsyncIterator[tuple[web.Application, aiohttp.ClientSession]]:
    """The app served on ``sock`` (cleanup_ctx entered), and an HTTP session bound to it."""
    sock = sock or bound_socket()
    app = example.create_app(example.Settings.from_env(env))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        root = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with aiohttp.ClientSession(base_url=root) as http:
            yield app, http
    finally:
        await runner.cleanup()


def getter(http: aiohttp.ClientSession) -> Any:
    async def get(path: str) -> tuple[int, Any]:
        async with http.get(path) as answer:
            return answer.status, await answer.json()

    return get


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(path, json=body) as answer:
        return answer.status, await answer.json()


async def test_client_lives_in_the_cleanup_context(sim: Simulator) -> None:
    """One client serves every request and is closed at cleanup."""
    async with running(env_for(sim)) as (app, http):
        client = app[example.CLIENT]
        await post(http, "/videos", FOX)
        await post(http, "/videos", FOX)
        assert client.statistics()["submits"] == 2
    assert client.statistics() == {}


async def test_video_is_submitted_then_reported_with_urls(sim: Simulator) -> None:
    """POST /videos gives the task id; GET /videos/{id} ends completed with video URLs."""
    async with running(env_for(sim)) as (_, http):
        status, created = await post(http, "/videos", FOX)
        path = f"/videos/{created['id']}"
        body = await poll_json(getter(http), path, lambda b: b["status"] == "completed")
    assert status == 201 and created["id"] == sim.stats.tasks[0]
    assert body["videos"] and body["progress"] == 100


async def test_bad_input_is_422_before_any_traffic(sim: Simulator) -> None:
    """A broken rule, an unknown field or a non-JSON body is a 422; nothing is sent."""
    async with running(env_for(sim)) as (_, http):
        rule = await post(http, "/videos", {**FOX, "resolution": "8k"})
        unknown = await post(http, "/videos", {**FOX, "colour": "red"})
        async with http.post("/videos", data=b"{nope") as answer:
            not_json = answer.status
    assert rule[0] == 422 and rule[1]["field"] == "resolution"
    assert unknown[0] == 422 and unknown[1]["field"] == "colour"
    assert not_json == 422
    assert sim.stats.submits == 0


async def test_unknown_task_and_batch_are_404(sim: Simulator) -> None:
    """Unknown ids get 404 JSON answers."""
    async with running(env_for(sim)) as (_, http):
        task = await getter(http)("/videos/task_nope")
        batch = await getter(http)("/batches/batch-nope")
    assert task[0] == 404 and "error" in task[1]
    assert batch[0] == 404


async def test_batch_runs_in_the_background_and_reports(sim: Simulator) -> None:
    """POST /batches answers 202; GET /batches/{id} ends with each job, in input order."""
    jobs = [{**FOX, "prompt": f"fox {i} [[duration=5]]"} for i in range(3)]
    async with running(env_for(sim)) as (_, http):
        status, started = await post(http, "/batches", {"requests": jobs, "max_in_flight": 2})
        path = f"/batches/{started['id']}"
        body = await poll_json(getter(http), path, lambda b: b["state"] != "running")
    assert status == 202
    assert body["state"] == "finished" and body["succeeded"] == 3
    assert [job["key"] for job in body["jobs"]] == [0, 1, 2]
    assert all(job["videos"] for job in body["jobs"])


async def test_evolink_callback_reaches_the_app(sim: Simulator) -> None:
    """With OMNIVID_CALLBACK_URL, the simulator calls the app back and GET needs no API call."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/evolink"
    env = env_for(sim, "evolink", OMNIVID_CALLBACK_URL=url, OMNIVID_ALLOW_PRIVATE_CALLBACKS="1")
    async with running(env, sock) as (app, http):
        _, created = await post(http, "/videos", EVOLINK_FOX)
        receiver = app[example.RECEIVER]
        await until(lambda: receiver.stats["confirmed"] == 1)
        polls = sim.stats.polls
        status, body = await getter(http)(f"/videos/{created['id']}")
    assert status == 200 and body["status"] == "completed"
    assert sim.stats.polls == polls
    assert [attempt.result for attempt in sim.stats.callbacks] == [200]


async def test_local_paths_are_refused_without_touching_the_filesystem(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body naming a server file (existing, a directory or missing) gets the same 422, no
    file is looked up or opened, and nothing is sent: no reading, uploading or probing."""
    paths = local_files(tmp_path, "server-secret")
    async with running(env_for(sim)) as (_, http):
        spy = FileSpy(monkeypatch, "server-secret")
        replies = {
            name: await post(http, "/videos", {"model": GEMINI, "prompt": "p", "videos": [path]})
            for name, path in paths.items()
        }
        batch = await post(
            http, "/batches", {"requests": [{"model": GEMINI, "videos": [paths["file"]]}]}
        )
    assert {status for status, _ in replies.values()} == {422}
    assert {body["field"] for _, body in replies.values()} == {"videos[0]"}
    assert len({body["rule"] for _, body in replies.values()}) == 1  # nothing to tell apart
    assert "local file paths are not accepted" in replies["file"][1]["rule"]
    assert batch[0] == 422 and batch[1]["field"] == "requests[0].videos[0]"
    assert spy.calls == []
    assert sim.stats.submits == 0
