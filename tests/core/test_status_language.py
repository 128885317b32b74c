"""``client.get/wait/watch(..., language=)``: APIMart's task-status language, checked locally."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from wirehelp import Recorder

import omnivid
from omnivid import errors

GEMINI = "gemini-omni-flash-preview"
R2V = "gemini-omni-flash-reference-to-video"
MakeClient = Callable[..., omnivid.AsyncClient]


def task_gets(recorder: Recorder) -> list[str]:
    """URLs of every task-status request sent."""
    return [s.url for s in recorder.sent if "/v1/tasks/" in s.url]


@pytest.mark.anyio
async def test_get_sends_the_language_query(make_client: MakeClient, recorder: Recorder) -> None:
    """get(..., language="ja") asks for ?language=ja; a 404 then comes back in Japanese."""
    async with make_client("apimart", session=recorder.session) as client:
        with pytest.raises(errors.NotFoundError) as caught:
            await client.get("task_nope", language="ja")
    assert task_gets(recorder) == [client.base_url + "/v1/tasks/task_nope?language=ja"]
    assert caught.value.args[0] == "タスクが見つかりません"


@pytest.mark.anyio
async def test_wait_reads_failures_in_the_language(
    make_client: MakeClient, recorder: Recorder
) -> None:
    """wait(..., language="zh") polls with the query every time; the failure is in Chinese."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await client.submit(
            omnivid.VideoRequest(model=GEMINI, prompt="x [[fail:quota]] [[duration=20]]")
        )
        done = await client.wait(task, language="zh")
    assert done.status is omnivid.TaskStatus.FAILED
    assert done.error == omnivid.TaskError(
        code="task_failed", message="上游配额暂时耗尽，请稍后重试"
    )
    polls = task_gets(recorder)
    assert polls and all(url.endswith("?language=zh") for url in polls)


@pytest.mark.anyio
async def test_watch_by_id_uses_the_language(make_client: MakeClient, recorder: Recorder) -> None:
    """watch(task_id, language="en") reads the task with the query from its first request."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await client.submit(omnivid.VideoRequest(model=GEMINI, prompt="x [[cancel]]"))
        snapshots = [t async for t in client.watch(task.id, language="en")]
    assert snapshots[-1].status is omnivid.TaskStatus.CANCELLED
    assert snapshots[-1].error is not None and snapshots[-1].error.message == "task cancelled"
    assert all(url.endswith("?language=en") for url in task_gets(recorder))


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["get", "wait", "watch"])
async def test_an_unknown_language_fails_before_the_network(
    make_client: MakeClient, recorder: Recorder, call: str
) -> None:
    """language="fr" is a ValidationError naming the field, the value and the four choices;
    nothing is sent."""
    async with make_client("apimart", session=recorder.session) as client:
        with pytest.raises(errors.ValidationError) as caught:
            if call == "get":
                await client.get("task_x", language="fr")
            elif call == "wait":
                await client.wait("task_x", language="fr")
            else:
                async for _ in client.watch("task_x", language="fr"):
                    pass
    assert (caught.value.field, caught.value.value) == ("language", "fr")
    assert caught.value.args[0] == "language='fr': apimart answers task status in zh, en, ko, ja"
    assert recorder.sent == []


@pytest.mark.anyio
async def test_evolink_has_no_language(make_client: MakeClient, recorder: Recorder) -> None:
    """EvoLink's task status has no language query: asking for one is a ValidationError."""
    async with make_client("evolink", session=recorder.session) as client:
        with pytest.raises(errors.ValidationError, match="evolink has no language option"):
            await client.get("task-unified-1-abc", language="en")
        with pytest.raises(errors.ValidationError, match="language"):
            await client.wait("task-unified-1-abc", language="zh")
    assert recorder.sent == []


@pytest.mark.anyio
async def test_without_language_no_query_is_sent(
    make_client: MakeClient, recorder: Recorder
) -> None:
    """The default sends the plain status URL, as before."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await client.generate(omnivid.VideoRequest(model=GEMINI, prompt="a fox"))
    assert task.status is omnivid.TaskStatus.COMPLETED
    assert task_gets(recorder) and all("?" not in url for url in task_gets(recorder))
