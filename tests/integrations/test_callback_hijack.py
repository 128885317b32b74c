"""A callback token authenticates exactly its own task; read-backs are bounded per token.

Each test talks HTTP to a real aiohttp receiver, whose read-backs go to the simulator.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anyio
import pytest
from _hooks import evolink_request

from omnivid import AsyncClient
from omnivid.errors import SubmissionUnknownError
from omnivid.integrations import token_digest

pytestmark = pytest.mark.anyio

RUNNING = "[[duration=100000]]"


def task_body(task_id: Any, status: str = "completed") -> bytes:
    """An EvoLink task-status body, as a callback would carry it."""
    return json.dumps(
        {"id": task_id, "object": "video.generation.task", "status": status, "progress": 100}
    ).encode()


async def lost_submit(client: AsyncClient, prompt: str) -> SubmissionUnknownError:
    """Submit a request whose answer is lost (the simulator creates the task anyway)."""
    request = evolink_request(f"{prompt} {RUNNING} [[fault:lost-response]]")
    with pytest.raises(SubmissionUnknownError) as caught:
        await client.submit(request)
    return caught.value


async def test_token_of_task_b_cannot_claim_a_lost_task(make_hook: Any) -> None:
    """B's token naming Z (whose submit answer was lost) is refused, reads nothing back, binds
    nothing; Z's own callback then recovers Z under Z's fingerprint."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        await client.submit(evolink_request(f"task b {RUNNING}"))
        lost = await lost_submit(client, "task z")
        z_id = hook.sim.stats.tasks[-1]
        polls = hook.sim.stats.polls
        forged = await hook.post(tokens[0], task_body(z_id))
        after_forged = (
            hook.sim.stats.polls,
            dict(hook.receiver.recovered),
            await hook.receiver.store.get(z_id),
        )
        genuine = await hook.post(tokens[1], task_body(z_id, "processing"))
        record = await hook.receiver.store.get(z_id)
    assert forged[0] == 403
    assert after_forged == (polls, {}, None)
    assert genuine[0] == 409  # Z is ours but still running
    assert set(hook.receiver.recovered) == {z_id}
    assert hook.receiver.recovered[z_id].fingerprint == lost.fingerprint
    assert record is not None and record.digest == token_digest(tokens[1])


async def test_lost_submit_token_refuses_made_up_and_foreign_tasks(make_hook: Any) -> None:
    """A lost submit's token naming a made-up id or another account's task is refused and
    stores nothing; the token still recovers its own task afterwards."""
    async with make_hook(readback_interval=0) as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        lost = await lost_submit(client, "mine")
        mine = hook.sim.stats.tasks[-1]
        async with hook.client(api_key="another-account", callbacks=None) as other:
            foreign = await other.submit(evolink_request(f"theirs {RUNNING}"))
        made_up = await hook.post(tokens[0], task_body("task-unified-1-madeup1"))
        theirs = await hook.post(tokens[0], task_body(foreign.id))
        stored = [await hook.receiver.store.get(t) for t in ("task-unified-1-madeup1", foreign.id)]
        recovered_before = dict(hook.receiver.recovered)
        own = await hook.post(tokens[0], task_body(mine, "processing"))
    assert (made_up[0], theirs[0]) == (403, 403)
    assert stored == [None, None] and recovered_before == {}
    assert hook.receiver.stats["unknown"] == 2
    assert own[0] == 409
    assert hook.receiver.recovered[mine].fingerprint == lost.fingerprint


async def test_a_recovered_token_cannot_be_moved_to_another_task(make_hook: Any) -> None:
    """Once a lost submit's token recovered its task, naming any other task with it is a 403."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        await lost_submit(client, "first")
        mine = hook.sim.stats.tasks[-1]
        other = await client.submit(evolink_request(f"second {RUNNING}"))
        await hook.receiver.store.discard(other.id)  # as if its record had expired
        assert (await hook.post(tokens[0], task_body(mine, "processing")))[0] == 409
        polls = hook.sim.stats.polls
        status, _ = await hook.post(tokens[0], task_body(other.id))
        record = await hook.receiver.store.get(other.id)
    assert status == 403
    assert hook.sim.stats.polls == polls
    assert record is None
    assert set(hook.receiver.recovered) == {mine}


@pytest.mark.parametrize("task_id", [None, 12345, ["task-1"], {"id": "task-1"}, ""])
async def test_missing_or_non_string_id_gets_400(make_hook: Any, task_id: Any) -> None:
    """A genuine token with an id that is null, a number, a list, an object or empty: 400, and
    nothing is read back or stored (``null`` is not the task "None")."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        await client.submit(evolink_request(f"fox {RUNNING}"))
        polls = hook.sim.stats.polls
        status, reply = await hook.post(tokens[0], task_body(task_id))
        record = await hook.receiver.store.get("None")
    assert (status, reply) == (400, {"error": "malformed callback body"})
    assert hook.sim.stats.polls == polls and record is None


async def test_missing_id_gets_400(make_hook: Any) -> None:
    """A body without an id is malformed: 400."""
    async with make_hook() as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        await client.submit(evolink_request(f"fox {RUNNING}"))
        status, _ = await hook.post(tokens[0], b'{"status": "completed", "progress": 100}')
    assert status == 400


async def test_a_hundred_callbacks_with_one_token_cause_one_read_back(make_hook: Any) -> None:
    """100 concurrent callbacks carrying one genuine token of a running task: one GET to the
    provider; the copies wait for it, then are refused with 429 until the interval passes."""
    async with make_hook() as hook, hook.client(time_scale=1.0) as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request(f"fox {RUNNING}"))
        polls = hook.sim.stats.polls
        statuses: list[int] = []
        url = hook.receiver.url_for(tokens[0])

        async def send(http: aiohttp.ClientSession) -> None:
            async with http.post(url, data=task_body(task.id)) as answer:
                statuses.append(answer.status)

        # a session of its own: the client's connections stay free for the read-back
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(send, http)
    assert hook.sim.stats.polls - polls == 1
    assert sorted(statuses) == [409] + [429] * 99
    assert hook.receiver.stats["throttled"] == 99


async def test_read_backs_resume_after_the_scaled_interval(make_hook: Any) -> None:
    """readback_interval is provider seconds times the client's time_scale: 200 s at 0.001
    is 0.2 real seconds; a callback inside it is throttled, one after it reads back."""
    async with make_hook(readback_interval=200) as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        task = await client.submit(evolink_request(f"fox {RUNNING}"))
        polls = hook.sim.stats.polls
        first = await hook.post(tokens[0], task_body(task.id))
        second = await hook.post(tokens[0], task_body(task.id))
        await anyio.sleep(0.25)
        third = await hook.post(tokens[0], task_body(task.id))
    assert [first[0], second[0], third[0]] == [409, 429, 409]
    assert hook.sim.stats.polls - polls == 2


async def test_throttling_is_per_token(make_hook: Any) -> None:
    """A throttled token does not delay another task's callback."""
    async with make_hook(readback_interval=1e5) as hook, hook.client() as client:
        tokens = hook.spy_tokens()
        first = await client.submit(evolink_request(f"one {RUNNING}"))
        second = await client.submit(evolink_request(f"two {RUNNING}"))
        replies = [
            await hook.post(tokens[0], task_body(first.id)),
            await hook.post(tokens[0], task_body(first.id)),
            await hook.post(tokens[1], task_body(second.id)),
        ]
    assert [status for status, _ in replies] == [409, 429, 409]
