"""examples/fastapi_app.py, in-process against the simulator (httpx's ASGI transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _examples import (
    EVOLINK_FOX,
    FOX,
    FileSpy,
    asgi_bridge,
    bound_socket,
    env_for,
    load_example,
    local_files,
    poll_json,
    until,
)

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

GEMINI = "gemini-omni-flash-preview"

example = load_example("fastapi_app")


@asynccontextmanager
async def running(env: dict[str, str]) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app with its lifespan entered, and an HTTP client talking to it in-process."""
    app = example.create_app(example.Settings.from_env(env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield app, http


def getter(http: httpx.AsyncClient) -> Any:
    async def get(path: str) -> tuple[int, Any]:
        answer = await http.get(path)
        return answer.status_code, answer.json()

    return get


def test_settings_come_from_the_environment() -> None:
    """Every OMNIVID_* variable is read."""
    settings = example.Settings.from_env(
        {
            "OMNIVID_PROVIDER": "evolink",
            "OMNIVID_BASE_URL": "http://127.0.0.1:9/evolink",
            "OMNIVID_API_KEY": "sk-x",
            "OMNIVID_CALLBACK_URL": "http://127.0.0.1:9/cb",
            "OMNIVID_ALLOW_PRIVATE_CALLBACKS": "1",
            "OMNIVID_TIME_SCALE": "0.01",
            "OMNIVID_MAX_IN_FLIGHT": "3",
        }
    )
    assert settings == example.Settings(
        provider="evolink",
        base_url="http://127.0.0.1:9/evolink",
        api_key="sk-x",
        callback_url="http://127.0.0.1:9/cb",
        allow_private_callbacks=True,
        time_scale=0.01,
        max_in_flight=3,
    )


async def test_one_client_lives_for_the_lifespan(sim: Simulator) -> None:
    """The lifespan opens one client for every request and closes it at shutdown."""
    async with running(env_for(sim)) as (app, http):
        client = app.state.client
        await http.post("/videos", json=FOX)
        await http.post("/videos", json=FOX)
        assert app.state.client is client and client.statistics()["submits"] == 2
    assert client.statistics() == {}  # closed: no transport any more


async def test_post_video_returns_the_task_id(sim: Simulator) -> None:
    """POST /videos submits once and answers 201 with the provider's task id."""
    async with running(env_for(sim)) as (_, http):
        answer = await http.post("/videos", json=FOX)
    assert answer.status_code == 201
    assert answer.json()["id"] == sim.stats.tasks[0]
    assert sim.stats.submits == 1


async def test_get_video_reports_status_and_urls(sim: Simulator) -> None:
    """GET /videos/{id} ends with status completed and the video URLs."""
    async with running(env_for(sim)) as (_, http):
        task_id = (await http.post("/videos", json=FOX)).json()["id"]
        body = await poll_json(getter(http), f"/videos/{task_id}", lambda b: b["progress"] == 100)
    assert body["status"] == "completed"
    assert body["videos"] and body["videos"][0].startswith(sim.url)


async def test_invalid_request_is_422_before_any_traffic(sim: Simulator) -> None:
    """A rule broken (duration 7) is a 422 naming field and rule, and nothing is sent."""
    async with running(env_for(sim)) as (_, http):
        answer = await http.post("/videos", json={**FOX, "duration": 7})
        unknown = await http.post("/videos", json={**FOX, "colour": "red"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "duration" and "4, 6, 8 or 10" in answer.json()["rule"]
    assert unknown.status_code == 422 and unknown.json()["field"] == "colour"
    assert sim.stats.submits == 0


async def test_unknown_task_is_404(sim: Simulator) -> None:
    """A task id the provider does not know, or that is not an id at all, is a 404."""
    async with running(env_for(sim)) as (_, http):
        unknown = await http.get("/videos/task_nope")
        odd = await http.get("/videos/..")
    assert unknown.status_code == 404
    assert odd.status_code == 404


async def test_provider_errors_never_show_the_api_key(sim: Simulator) -> None:
    """A refused key gives a 502 whose body does not contain the key."""
    sim.configure(api_keys={"sk-the-right-one"})
    env = env_for(sim, OMNIVID_API_KEY="sk-wrong-but-secret-123")
    async with running(env) as (_, http):
        answer = await http.post("/videos", json=FOX)
    assert answer.status_code == 502
    assert "sk-wrong-but-secret-123" not in answer.text


async def test_evolink_result_arrives_by_callback(sim: Simulator) -> None:
    """With OMNIVID_CALLBACK_URL, a confirmed callback answers GET /videos without an API call."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/omnivid/callbacks"
    env = env_for(sim, "evolink", OMNIVID_CALLBACK_URL=url, OMNIVID_ALLOW_PRIVATE_CALLBACKS="1")
    app = example.create_app(example.Settings.from_env(env))
    async with (
        app.router.lifespan_context(app),
        asgi_bridge(app, sock) as root,
        httpx.AsyncClient(base_url=root) as http,
    ):
        task_id = (await http.post("/videos", json=EVOLINK_FOX)).json()["id"]
        await until(lambda: app.state.receiver.stats["confirmed"] == 1)
        polls = sim.stats.polls
        answer = await http.get(f"/videos/{task_id}")
    assert answer.json()["status"] == "completed" and answer.json()["videos"]
    assert sim.stats.polls == polls  # answered from the confirmed callback, no API call
    assert [attempt.result for attempt in sim.stats.callbacks] == [200]


async def test_batch_runs_in_the_background_and_reports(sim: Simulator) -> None:
    """POST /batches answers 202 at once; GET /batches/{id} ends with every job's result."""
    jobs = [
        {**FOX, "prompt": "fox one [[duration=5]]"},
        {**FOX, "prompt": "fox two [[duration=5]] [[fail:moderation]]"},
        {**FOX, "prompt": "fox three [[duration=5]]"},
    ]
    async with running(env_for(sim)) as (_, http):
        started = await http.post("/batches", json={"requests": jobs, "max_in_flight": 2})
        assert started.status_code == 202 and started.json()["total"] == 3
        path = f"/batches/{started.json()['id']}"
        body = await poll_json(getter(http), path, lambda b: b["state"] != "running")
    assert body["state"] == "finished"
    assert (body["done"], body["succeeded"], body["failed"]) == (3, 2, 1)
    assert [job["key"] for job in body["jobs"]] == [0, 1, 2]
    assert body["jobs"][1]["status"] == "failed" and "moderation" in body["jobs"][1]["error"]
    assert {job["task_id"] for job in body["jobs"]} == set(sim.stats.tasks)


async def test_batch_with_an_invalid_job_is_422_and_sends_nothing(sim: Simulator) -> None:
    """One bad job rejects the whole batch, naming its index, before any submit."""
    jobs = [FOX, {**FOX, "duration": 7}]
    async with running(env_for(sim)) as (_, http):
        answer = await http.post("/batches", json={"requests": jobs})
        empty = await http.post("/batches", json={"requests": []})
        unknown = await http.get("/batches/batch-nope")
    assert answer.status_code == 422 and answer.json()["field"] == "requests[1].duration"
    assert empty.status_code == 422 and empty.json()["field"] == "requests"
    assert unknown.status_code == 404
    assert sim.stats.submits == 0


async def test_shutdown_cancels_a_running_batch(sim: Simulator) -> None:
    """Leaving the lifespan cancels background batches; their state says so."""
    slow = {**FOX, "prompt": "slow fox [[duration=100000]]"}
    async with running(env_for(sim)) as (app, http):
        started = (await http.post("/batches", json={"requests": [slow]})).json()
        await until(lambda: sim.stats.submits == 1)
        batch = app.state.batches.runs[started["id"]]
    assert batch.state == "cancelled"


async def test_local_paths_are_refused_without_touching_the_filesystem(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body naming a server file (existing, a directory or missing) gets the same 422, no
    file is looked up or opened, and nothing is sent: no reading, uploading or probing."""
    paths = local_files(tmp_path, "server-secret")
    async with running(env_for(sim)) as (_, http):
        spy = FileSpy(monkeypatch, "server-secret")
        replies = {
            name: await http.post(
                "/videos", json={"model": GEMINI, "prompt": "p", "videos": [path]}
            )
            for name, path in paths.items()
        }
        batch = await http.post(
            "/batches", json={"requests": [{"model": GEMINI, "videos": [paths["file"]]}]}
        )
    bodies = {name: answer.json() for name, answer in replies.items()}
    assert {answer.status_code for answer in replies.values()} == {422}
    assert {body["field"] for body in bodies.values()} == {"videos[0]"}
    assert len({body["rule"] for body in bodies.values()}) == 1  # nothing to tell apart
    assert "local file paths are not accepted" in bodies["file"]["rule"]
    assert batch.status_code == 422 and batch.json()["field"] == "requests[0].videos[0]"
    assert spy.calls == []
    assert sim.stats.submits == 0
