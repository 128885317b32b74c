"""EvoLink callbacks end to end: simulator -> real aiohttp receiver -> waiting client."""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

import anyio
import attrs
import pytest
from _hooks import SCALE, evolink_request

from omnivid import PollPolicy, TaskStatus
from omnivid.errors import SubmissionUnknownError
from omnivid.integrations import token_digest
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Wait (in small real steps) until ``predicate()`` is true."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other components
            await anyio.sleep(0.005)


def task_body(task_id: str, status: str = "completed") -> bytes:
    """An EvoLink task-status body, as a callback would carry it."""
    return json.dumps(
        {"id": task_id, "object": "video.generation.task", "status": status, "progress": 100}
    ).encode()


async def test_result_arrives_by_callback_long_before_the_fallback_poll(make_hook: Any) -> None:
    """wait() returns through the callback while the first fallback poll is 100 s away."""
    async with make_hook() as hook, hook.client() as client:
        started = time.monotonic()
        task = await client.submit(evolink_request())
        done = await client.wait(task, timeout=5)
        elapsed = time.monotonic() - started
    assert done.status is TaskStatus.COMPLETED
    assert elapsed < 2.0  # the fallback poll would come after 100 real seconds
    assert hook.receiver.stats["confirmed"] == 1
    assert hook.sim.stats.polls == 2  # the receiver's read-back, then the woken waiter's poll


async def test_watch_is_woken_by_the_callback(make_hook: Any) -> None:
    """watch() yields the terminal snapshot as soon as the callback is confirmed."""
    async with make_hook() as hook, hook.client() as client:
        task = await client.submit(evolink_request())
        with anyio.fail_after(5):
            snapshots = [s async for s in client.watch(task)]
    assert snapshots[-1].status is TaskStatus.COMPLETED


async def test_callback_confirmed_before_anyone_waits_makes_wait_return_at_once(
    make_hook: Any,
) -> None:
    """A waiter that starts after the confirmed callback polls at once instead of sleeping."""
    async with make_hook() as hook, hook.client() as client:
        task = await client.submit(evolink_request())
        await until(lambda: hook.receiver.stats["confirmed"] == 1)
        with anyio.fail_after(2):
            done = await client.wait(task)
    assert done.status is TaskStatus.COMPLETED
    assert hook.receiver.result(task.id) is not None


async def test_failed_task_is_reported_through_the_callback(make_hook: Any) -> None:
    """A failed task wakes the waiter too, with the provider's error."""
    async with make_hook() as hook, hook.client() as client:
        task = await client.submit(evolink_request("a fox [[duration=3]] [[fail:moderation]]"))
        done = await client.wait(task, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "content_moderation"


async def test_each_submit_gets_its_own_token_only_in_the_body(make_hook: Any) -> None:
    """Two submits carry different 43-character tokens; the request object holds none."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        request = evolink_request()
        first = await client.submit(request)
        second = await client.submit(request)
        await client.wait(first, timeout=5)
        await client.wait(second, timeout=5)
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert all(len(t) == 43 for t in tokens)
    assert request.callback_url is None
    urls = {attempt.url for attempt in hook.sim.stats.callbacks}
    assert urls == {hook.receiver.url_for(t) for t in tokens}


async def test_a_caller_supplied_callback_url_is_left_alone(make_hook: Any, sim: Simulator) -> None:
    """A request with its own callback_url is not given a token (its callback goes elsewhere)."""
    async with make_hook() as hook, hook.client(poll=PollPolicy(floor=1, min_interval=1)) as client:
        tokens = hook.spy_tokens()
        own = f"{sim.url}/nowhere"
        request = attrs.evolve(evolink_request(), callback_url=own)
        task = await client.submit(request)
        await client.wait(task, timeout=5)
    assert tokens == []
    assert {a.url for a in sim.stats.callbacks} == {own}


async def test_forged_token_is_rejected_and_changes_nothing(make_hook: Any) -> None:
    """A well-shaped but wrong token gets 403, no read-back, and wakes nobody."""
    async with make_hook() as hook, hook.client() as client:
        task = await client.submit(evolink_request("a fox [[duration=100000]]"))
        polls = hook.sim.stats.polls
        status, reply = await hook.post(secrets.token_urlsafe(32), task_body(task.id))
        assert client.callbacks is not None
        assert not client.callbacks.take_wake(task.id)
    assert status == 403 and "error" in reply
    assert hook.sim.stats.polls == polls
    assert hook.receiver.stats["forged"] == 1 and hook.receiver.stats["confirmed"] == 0


async def test_token_of_another_task_is_rejected(make_hook: Any) -> None:
    """A genuine token presented with another task's id gets 403."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        await client.submit(evolink_request("fox one [[duration=100000]]"))
        other = await client.submit(evolink_request("fox two [[duration=100000]]"))
        status, _ = await hook.post(tokens[0], task_body(other.id))
    assert status == 403
    assert hook.receiver.stats["forged"] == 1


async def test_unknown_task_id_is_rejected(make_hook: Any) -> None:
    """A callback naming a task this receiver never bound gets 403."""
    async with make_hook() as hook, hook.client():
        status, _ = await hook.post(secrets.token_urlsafe(32), task_body("task-unified-0-nope"))
    assert status == 403
    assert hook.receiver.stats["unknown"] == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"status": "completed"}', b'{"id": "../../x", "status": "x"}'],
)
async def test_malformed_body_gets_400(make_hook: Any, body: bytes) -> None:
    """A body that is not an EvoLink task object (or names an odd id) gets 400."""
    async with make_hook() as hook, hook.client():
        status, reply = await hook.post(secrets.token_urlsafe(32), body)
    assert status == 400 and reply == {"error": "malformed callback body"}


async def test_badly_shaped_token_gets_403(make_hook: Any) -> None:
    """A path segment that cannot be a token is refused before the body is parsed."""
    async with make_hook() as hook, hook.client():
        status, _ = await hook.post("short-token", task_body("task-1"))
    assert status == 403


async def test_oversized_body_gets_413(make_hook: Any) -> None:
    """A body over max_body is refused without being parsed."""
    async with make_hook(max_body=1024) as hook, hook.client():
        status, _ = await hook.post(secrets.token_urlsafe(32), b"x" * 5000)
    assert status == 413


async def test_duplicate_callback_is_answered_without_another_read_back(make_hook: Any) -> None:
    """Replaying a confirmed callback gets 200 "duplicate" and no GET."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request())
        await client.wait(task, timeout=5)
        polls = hook.sim.stats.polls
        status, reply = await hook.post(tokens[0], task_body(task.id))
    assert (status, reply) == (200, {"status": "duplicate"})
    assert hook.sim.stats.polls == polls
    assert hook.receiver.stats["duplicate"] == 1


async def test_concurrent_duplicates_read_the_task_back_once(make_hook: Any) -> None:
    """Copies of a callback arriving during a slow read-back cause one read-back in all."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request("fox [[duration=20]] [[fault:slow=0.2@poll]]"))
        await until(lambda: hook.sim.task_status(task.id) == "completed")
        replies: list[tuple[int, dict[str, Any]]] = []

        async def send() -> None:
            replies.append(await hook.post(tokens[0], task_body(task.id)))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(send)
        stats = hook.receiver.stats
        await until(lambda: stats["confirmed"] + stats["duplicate"] == 6)
    assert {status for status, _ in replies} == {200}
    assert hook.sim.stats.polls == 1  # the simulator's own callback is a sixth copy
    assert hook.receiver.stats["confirmed"] == 1
    assert hook.receiver.stats["duplicate"] == 5


async def test_callback_for_a_running_task_is_not_trusted(make_hook: Any) -> None:
    """A genuine token claiming "completed" while the read-back says running gets 409."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request("a fox [[duration=100000]]"))
        status, _ = await hook.post(tokens[0], task_body(task.id, "completed"))
        assert hook.receiver.result(task.id) is None
        assert client.callbacks is not None and not client.callbacks.take_wake(task.id)
    assert status == 409
    assert hook.receiver.stats["unconfirmed"] == 1


async def test_replies_never_echo_the_token_or_the_body(make_hook: Any) -> None:
    """No reply, accepted or refused, contains the token or text from the body."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request())
        await client.wait(task, timeout=5)
        probes = [
            (tokens[0], task_body(task.id)),
            (secrets.token_urlsafe(32), task_body(task.id)),
            (tokens[0], b'{"id": "SECRETISH-ID", "status": "completed"}'),
            (tokens[0], b"<<SECRETISH-BODY>>"),
        ]
        texts = [json.dumps((await hook.post(t, b))[1]) for t, b in probes]
    for text in texts:
        assert tokens[0] not in text and "SECRETISH" not in text and task.id not in text


async def test_lost_callback_only_delays_the_result(make_hook: Any) -> None:
    """With the callback refused, the fallback poll still finds the result."""
    fallback = PollPolicy(floor=200, min_interval=200, max_interval=200)
    async with make_hook(fallback_poll=fallback) as hook, hook.client() as client:
        hook.receiver.handle = refuse  # type: ignore[method-assign]
        started = time.monotonic()
        task = await client.submit(evolink_request())
        done = await client.wait(task, timeout=5)
    assert done.status is TaskStatus.COMPLETED
    assert time.monotonic() - started >= 200 * SCALE
    assert all(a.result == 503 for a in hook.sim.stats.callbacks)


async def refuse(token: str, body: bytes) -> Any:
    """A receiver that is down."""
    from omnivid.integrations import CallbackReply

    return CallbackReply(503, {"error": "down"})


async def test_callback_recovers_a_task_whose_submit_answer_was_lost(make_hook: Any) -> None:
    """After SubmissionUnknownError, the task's callback reveals its id in receiver.recovered."""
    async with make_hook() as hook, hook.client() as client:
        request = evolink_request("a fox [[duration=3]] [[fault:lost-response]]")
        with pytest.raises(SubmissionUnknownError) as caught:
            await client.submit(request)
        await until(lambda: hook.receiver.stats["recovered"] == 1)
    (task_id, found), *_ = hook.receiver.recovered.items()
    assert task_id == hook.sim.stats.tasks[0]
    assert found.fingerprint == caught.value.fingerprint
    assert found.task.status is TaskStatus.COMPLETED


async def test_no_attached_client_gets_503(make_hook: Any) -> None:
    """After the client closes, callbacks are refused with 503 so the provider retries."""
    async with make_hook() as hook:
        async with hook.client():
            pass
        reply = await hook.receiver.handle(secrets.token_urlsafe(32), task_body("task-1"))
    assert reply.status == 503


class BrokenStore:
    """A token store whose backend is down."""

    async def put(self, task_id: str, record: Any) -> None:
        raise ConnectionError("store down")

    async def get(self, task_id: str) -> Any:
        raise ConnectionError("store down")

    async def confirm(self, task_id: str, at: float) -> None:
        raise ConnectionError("store down")

    async def discard(self, task_id: str) -> None:
        raise ConnectionError("store down")


async def test_a_failing_token_store_never_loses_the_task(
    make_hook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """submit still returns the task id; its callback gets 503; polling finds the result."""
    fallback = PollPolicy(floor=100, min_interval=100, max_interval=100)
    async with make_hook(store=BrokenStore(), fallback_poll=fallback) as hook, hook.client() as c:
        task = await c.submit(evolink_request())
        done = await c.wait(task, timeout=5)
    assert done.id == task.id and done.status is TaskStatus.COMPLETED
    assert hook.receiver.stats["unavailable"] >= 1
    assert any("could not store the callback token" in r.getMessage() for r in caplog.records)


async def test_no_log_line_carries_a_token(
    make_hook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A full run, with forged and duplicate callbacks, logs no token at any level."""
    caplog.set_level(logging.DEBUG)
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request())
        await client.wait(task, timeout=5)
        await hook.post(tokens[0], task_body(task.id))
        await hook.post(secrets.token_urlsafe(32), task_body(task.id))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "confirmed" in text and "wrong token" in text
    assert tokens[0] not in text and token_digest(tokens[0]) not in text


async def test_map_is_woken_by_callbacks(make_hook: Any) -> None:
    """client.map finishes a batch through callbacks while its fallback polls are 100 s away."""
    requests = [evolink_request(f"fox {i} [[duration={3 + i}]]") for i in range(4)]
    async with make_hook() as hook, hook.client() as client:
        with anyio.fail_after(5):
            async with client.map(requests, max_in_flight=4) as outcomes:
                done = [outcome async for outcome in outcomes]
    assert sorted(o.key for o in done) == [0, 1, 2, 3]
    assert all(o.ok for o in done)
    assert hook.receiver.stats["confirmed"] == 4
