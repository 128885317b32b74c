"""APIMart's task-status ``language`` query (zh, en, ko, ja): the simulator answers in it."""

from __future__ import annotations

import aiohttp
import pytest
from simhelp import create, poll, wait_status

from omnivid.testing import FAILURES, Simulator

pytestmark = pytest.mark.anyio

NOT_FOUND = {
    "zh": "任务不存在",
    "en": "Task not found",
    "ko": "작업을 찾을 수 없습니다",
    "ja": "タスクが見つかりません",
}
QUOTA = {
    "zh": "上游配额暂时耗尽，请稍后重试",
    "en": FAILURES["quota"][0],
    "ko": "업스트림 할당량이 일시적으로 소진되었습니다. 잠시 후 다시 시도하세요",
    "ja": "上流のクォータが一時的に枯渇しています。しばらくしてから再試行してください",
}


@pytest.mark.parametrize("language", sorted(NOT_FOUND))
async def test_error_messages_follow_the_query(
    sim: Simulator, http: aiohttp.ClientSession, language: str
) -> None:
    """An unknown task's 404 message is in the asked language, whatever the configured one."""
    resp = await poll(http, sim, "apimart", "task_nope", params={"language": language})
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error == {"code": 404, "message": NOT_FOUND[language], "type": "not_found_error"}


async def test_without_the_query_the_configured_language_is_used(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """No query: errors in the simulator's configured language (zh by default), failure
    messages as before (English)."""
    resp = await poll(http, sim, "apimart", "task_nope")
    assert (await resp.json())["error"]["message"] == "任务不存在"
    task_id = await create(http, sim, "apimart", markers="[[fail:quota]] [[duration=1]]")
    payload = await wait_status(http, sim, "apimart", task_id, ("failed",))
    assert payload["data"]["error"] == {"message": FAILURES["quota"][0], "code": "task_failed"}


@pytest.mark.parametrize("language", sorted(QUOTA))
async def test_failure_messages_follow_the_query(
    sim: Simulator, http: aiohttp.ClientSession, language: str
) -> None:
    """A failed task's error message is in the asked language; its code stays task_failed."""
    task_id = await create(http, sim, "apimart", markers="[[fail:quota]] [[duration=1]]")
    await wait_status(http, sim, "apimart", task_id, ("failed",))
    resp = await poll(http, sim, "apimart", task_id, params={"language": language})
    assert resp.status == 200
    assert (await resp.json())["data"]["error"] == {
        "message": QUOTA[language],
        "code": "task_failed",
    }


async def test_the_rate_limit_answer_follows_the_query(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A 429 on a poll is in the asked language too."""
    task_id = await create(http, sim, "apimart", markers="[[fault:429@poll]]")
    resp = await poll(http, sim, "apimart", task_id, params={"language": "ko"})
    assert resp.status == 429
    assert (await resp.json())["error"][
        "message"
    ] == "요청이 너무 많습니다. 잠시 후 다시 시도하세요"


async def test_an_unknown_language_is_a_400(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A language outside zh, en, ko, ja is refused with APIMart's 400, naming the choices."""
    task_id = await create(http, sim, "apimart")
    resp = await poll(http, sim, "apimart", task_id, params={"language": "fr"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].endswith("language must be one of zh, en, ko, ja")


async def test_evolink_ignores_the_query(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """EvoLink has no language query: its answers are the same with or without one."""
    task_id = await create(http, sim, "evolink")
    resp = await poll(http, sim, "evolink", task_id, params={"language": "xx"})
    assert resp.status == 200
    assert (await resp.json())["id"] == task_id


async def test_the_simulator_can_speak_korean_by_default(http: aiohttp.ClientSession) -> None:
    """language="ko" is a valid simulator setting, like zh, en and ja."""
    async with Simulator(language="ko", time_scale=0.001) as sim:
        resp = await poll(http, sim, "apimart", "task_nope")
    assert (await resp.json())["error"]["message"] == NOT_FOUND["ko"]
