"""Whole tasks over loopback HTTP: generate for every mode of every model, watch, wait, failures.

The simulator runs 1000x faster than real time and the clients scale their poll schedule the
same way, so a four-minute Omni-Flash-Ext task takes a quarter of a second here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import omnivid
from omnivid import TaskStatus, errors
from omnivid.testing import Simulator, video_bytes

GEMINI = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
R2V = "gemini-omni-flash-reference-to-video"
IMG = "https://example.com/character.jpg"
VID = "https://example.com/clip.mp4"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
MakeClient = Callable[..., omnivid.AsyncClient]

MODES: list[tuple[str, str, dict[str, Any]]] = [
    ("apimart", "gemini text-to-video", {"model": GEMINI, "prompt": "a red apple"}),
    ("apimart", "gemini image-to-video", {"model": GEMINI, "prompt": "animate", "images": [IMG]}),
    ("apimart", "gemini video-to-video", {"model": GEMINI, "prompt": "ripple", "videos": [VID]}),
    ("apimart", "gemini local video", {"model": GEMINI, "prompt": "ripple", "videos": ["@mp4"]}),
    (
        "apimart",
        "gemini mixed",
        {"model": GEMINI, "prompt": "mix", "images": [IMG] * 2, "videos": [VID]},
    ),
    ("apimart", "gemini references only", {"model": GEMINI, "images": [IMG]}),
    (
        "apimart",
        "ext text-to-video",
        {"model": EXT, "prompt": "sunset", "duration": 4, "resolution": "4k"},
    ),
    (
        "apimart",
        "ext image-to-video",
        {"model": EXT, "prompt": "smile", "images": [IMG], "duration": 6},
    ),
    (
        "apimart",
        "ext frame",
        {"model": EXT, "prompt": "go", "generation_type": "frame", "images": [IMG]},
    ),
    (
        "apimart",
        "ext three-image fusion",
        {"model": EXT, "prompt": "fuse", "generation_type": "reference", "images": [IMG] * 3},
    ),
    (
        "apimart",
        "ext video-to-video",
        {"model": EXT, "prompt": "at night", "videos": [VID], "resolution": "720p"},
    ),
    (
        "evolink",
        "r2v image URLs",
        {"model": R2V, "prompt": "walk", "images": [IMG, IMG], "duration": 10},
    ),
    (
        "evolink",
        "r2v local image",
        {"model": R2V, "prompt": "walk", "images": ["@png"], "duration": "auto"},
    ),
    (
        "evolink",
        "r2v data URL",
        {
            "model": R2V,
            "prompt": "walk",
            "images": ["data:image/png;base64,iVBORw0KGgo="],
            "aspect_ratio": "9:16",
        },
    ),
]


def _local(fields: dict[str, Any], tmp: Path) -> dict[str, Any]:
    files = {"@png": tmp / "ref.png", "@mp4": tmp / "ref.mp4"}
    files["@png"].write_bytes(PNG)
    files["@mp4"].write_bytes(video_bytes("ref"))
    return {
        k: [str(files[v]) if v in files else v for v in value] if isinstance(value, list) else value
        for k, value in fields.items()
    }


@pytest.mark.anyio
@pytest.mark.parametrize(("provider", "mode", "fields"), MODES, ids=[m[1] for m in MODES])
async def test_generate_every_mode(
    sim: Simulator,
    make_client: MakeClient,
    tmp_path: Path,
    provider: str,
    mode: str,
    fields: dict[str, Any],
) -> None:
    """generate() submits, polls and returns the completed task with its video and cost."""
    request = omnivid.VideoRequest(**_local(fields, tmp_path))
    async with make_client(provider) as client:
        task = await client.generate(request)
    assert task.status is TaskStatus.COMPLETED and task.progress == 100
    assert task.model == request.model
    assert task.provider == provider
    assert len(task.videos) == 1 and task.videos[0].url.startswith(sim.url)
    assert task.videos[0].expires_at is not None
    assert (task.cost or task.credits or 0) > 0  # EvoLink reports reserved credits only
    assert sim.stats.submits == 1
    assert 1 <= sim.stats.polls <= 15  # server-hinted schedule, not a busy loop


@pytest.mark.anyio
async def test_multi_turn_extend_from(sim: Simulator, apimart: omnivid.AsyncClient) -> None:
    """A second turn with extend_from=<first task id> edits the earlier video."""
    first = await apimart.generate(omnivid.VideoRequest(model=GEMINI, prompt="a cat on a sofa"))
    request = omnivid.VideoRequest(model=GEMINI, prompt="now make it jump", extend_from=first.id)
    assert apimart.build_body(request)["extend_from_task_id"] == first.id
    second = await apimart.generate(request)
    assert second.status is TaskStatus.COMPLETED
    assert second.id != first.id
    assert sim.stats.tasks == [first.id, second.id]


@pytest.mark.anyio
async def test_extend_from_an_unfinished_task_is_refused_by_the_provider(
    sim: Simulator, apimart: omnivid.AsyncClient
) -> None:
    """extending a task that is not completed is the provider's 400, never an ambiguity."""
    first = await apimart.submit(omnivid.VideoRequest(model=GEMINI, prompt="x [[duration=999]]"))
    with pytest.raises(errors.BadRequestError):
        await apimart.submit(omnivid.VideoRequest(model=GEMINI, prompt="y", extend_from=first.id))
    assert sim.stats.tasks == [first.id]


@pytest.mark.anyio
async def test_watch_yields_changes_until_terminal(apimart: omnivid.AsyncClient) -> None:
    """watch() yields the submitted task, then each change, ending with the terminal one."""
    task = await apimart.submit(omnivid.VideoRequest(model=EXT, prompt="fox"))
    seen = [snapshot async for snapshot in apimart.watch(task)]
    assert seen[0] == task and seen[0].status is TaskStatus.PENDING
    assert seen[-1].status is TaskStatus.COMPLETED
    assert not any(s.is_terminal for s in seen[:-1])
    keys = [(s.status, s.progress) for s in seen]
    assert len(set(keys)) == len(keys)  # a snapshot only when something changed
    progress = [s.progress for s in seen]
    assert progress == sorted(progress)
    assert all(s.model == EXT for s in seen)


@pytest.mark.anyio
async def test_watch_by_id(evolink: omnivid.AsyncClient) -> None:
    """watch("task id") reads the task first, then follows it to the end."""
    task = await evolink.submit(omnivid.VideoRequest(model=R2V, prompt="walk", images=[IMG]))
    seen = [snapshot async for snapshot in evolink.watch(task.id)]
    assert seen[0].id == task.id
    assert seen[-1].status is TaskStatus.COMPLETED


@pytest.mark.anyio
async def test_wait_by_id_returns_the_terminal_task(apimart: omnivid.AsyncClient) -> None:
    """wait(task_id) returns the completed task."""
    task = await apimart.submit(omnivid.VideoRequest(model=GEMINI, prompt="apple"))
    done = await apimart.wait(task.id)
    assert (done.id, done.status) == (task.id, TaskStatus.COMPLETED)


@pytest.mark.anyio
async def test_first_poll_waits_for_the_estimate(
    sim: Simulator, apimart: omnivid.AsyncClient
) -> None:
    """The first poll waits min(max(floor, 0.75 x estimate), cap): 60 s -> 45 s -> 30 s."""
    await apimart.generate(omnivid.VideoRequest(model=GEMINI, prompt="apple"))
    submit = next(r.time for r in sim.request_log if r.method == "POST")
    first_poll = next(r.time for r in sim.request_log if r.method == "GET")
    assert 0.030 <= first_poll - submit < 0.2


@pytest.mark.anyio
async def test_wait_timeout_keeps_the_task(sim: Simulator, apimart: omnivid.AsyncClient) -> None:
    """wait(timeout=...) raises TaskTimeoutError with the task id and last snapshot."""
    task = await apimart.submit(omnivid.VideoRequest(model=EXT, prompt="slow [[duration=5000]]"))
    with pytest.raises(errors.TaskTimeoutError) as caught:
        await apimart.wait(task, timeout=0.05)
    err = caught.value
    assert err.task_id == task.id
    assert err.task is not None and not err.task.is_terminal
    assert "still running" in str(err)
    assert sim.task_status(task.id) in ("pending", "processing")


@pytest.mark.anyio
async def test_wait_timeout_leaves_no_per_task_state(apimart: omnivid.AsyncClient) -> None:
    """A timed-out wait forgets the task's submit time and wake-up event (no leak per task)."""
    task = await apimart.submit(omnivid.VideoRequest(model=EXT, prompt="slow [[duration=5000]]"))
    with pytest.raises(errors.TaskTimeoutError):
        await apimart.wait(task, timeout=0.01)
    assert task.id not in apimart._submitted_at
    assert task.id not in apimart._nudges


@pytest.mark.anyio
async def test_wait_returns_failed_tasks_without_raising(apimart: omnivid.AsyncClient) -> None:
    """wait() hands back a failed task; only generate() turns it into an error."""
    task = await apimart.submit(omnivid.VideoRequest(model=GEMINI, prompt="x [[fail:timeout]]"))
    done = await apimart.wait(task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "task_failed"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "marker", "status", "kind"),
    [
        ("apimart", "[[fail:moderation]]", TaskStatus.FAILED, "permanent"),
        ("apimart", "[[fail:quota]]", TaskStatus.FAILED, "transient"),
        ("apimart", "[[fail:timeout]]", TaskStatus.FAILED, "transient"),
        ("apimart", "[[cancel]]", TaskStatus.CANCELLED, "permanent"),
        ("evolink", "[[fail:moderation]]", TaskStatus.FAILED, "permanent"),
        ("evolink", "[[fail:quota]]", TaskStatus.FAILED, "transient"),
        ("evolink", "[[fail:timeout]]", TaskStatus.FAILED, "transient"),
    ],
)
async def test_generate_raises_task_failed(
    make_client: MakeClient, provider: str, marker: str, status: TaskStatus, kind: str
) -> None:
    """A task ending failed or cancelled raises TaskFailedError carrying it, classified."""
    if provider == "apimart":
        request = omnivid.VideoRequest(model=GEMINI, prompt=f"apple {marker}")
    else:
        request = omnivid.VideoRequest(model=R2V, prompt=f"walk {marker}", images=[IMG])
    async with make_client(provider) as client:
        with pytest.raises(errors.TaskFailedError) as caught:
            await client.generate(request)
        task = caught.value.task
        assert task.status is status and task.is_terminal
        assert task.cost in (0, None)
        assert caught.value.task_id == task.id
        assert client.provider.classify_failure(task) == kind


@pytest.mark.anyio
async def test_nudge_wakes_a_waiter_at_once(sim: Simulator, make_client: MakeClient) -> None:
    """nudge(task_id) (a callback arrived) makes a waiter poll now instead of much later."""
    lazy = omnivid.PollPolicy(floor=10_000.0, max_interval=10_000.0)  # 10 real s at this scale
    async with make_client("apimart", poll=lazy) as client:
        task = await client.submit(omnivid.VideoRequest(model=GEMINI, prompt="a [[duration=1]]"))
        result: list[omnivid.Task] = []

        async def waiter() -> None:
            result.append(await client.wait(task))

        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.05)  # 50 simulated seconds: the task is done by now
                assert sim.task_status(task.id) == "completed"
                client.nudge(task.id)
    assert result[0].status is TaskStatus.COMPLETED
    assert sim.stats.polls == 1


@pytest.mark.anyio
async def test_sleep_until_due_reports_a_nudge(apimart: omnivid.AsyncClient) -> None:
    """sleep_until_due is True when nudged and False when the delay ran out."""
    assert await apimart.sleep_until_due("t1", 0.01) is False
    async with anyio.create_task_group() as tg:

        async def nudge_soon() -> None:
            await anyio.sleep(0.01)
            apimart.nudge("t1")

        tg.start_soon(nudge_soon)
        with anyio.fail_after(2):
            assert await apimart.sleep_until_due("t1", 60.0) is True
