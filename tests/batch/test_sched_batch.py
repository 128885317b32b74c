"""client.open_batch: add requests while outcomes stream."""

from __future__ import annotations

import pytest
from schedhelp import client, collect, gemini

from omnivid.errors import ValidationError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_add_while_streaming(sim: Simulator) -> None:
    """Requests added while outcomes arrive run too; close() ends the iteration."""
    async with client(sim) as c, c.open_batch(max_in_flight=4) as batch:
        for i in range(3):
            batch.add(gemini(i), key=f"first-{i}")
        keys = []
        async for outcome in batch:
            keys.append(outcome.key)
            if len(keys) == 1:
                batch.add(gemini(10), key="late")
                batch.close()
    assert sorted(keys) == ["first-0", "first-1", "first-2", "late"]


async def test_keys_default_to_a_running_number(sim: Simulator) -> None:
    """add() without a key numbers the requests from 0."""
    async with client(sim) as c, c.open_batch() as batch:
        assert [batch.add(gemini(i)) for i in range(3)] == [0, 1, 2]
        batch.close()
        got = await collect(batch)
    assert sorted(o.key for o in got) == [0, 1, 2]


async def test_put_waits_for_room_then_queues(sim: Simulator) -> None:
    """await put() queues the request (after room is free) and returns its key."""
    async with client(sim) as c, c.open_batch(prefetch=1) as batch:
        keys = [await batch.put(gemini(i)) for i in range(4)]
        batch.close()
        got = await collect(batch)
    assert keys == [0, 1, 2, 3] and len(got) == 4


async def test_add_after_close_is_an_error(sim: Simulator) -> None:
    """A closed batch takes no more requests."""
    async with client(sim) as c, c.open_batch() as batch:
        batch.close()
        assert batch.closed
        with pytest.raises(RuntimeError, match="closed"):
            batch.add(gemini(0))


async def test_add_checks_the_type(sim: Simulator) -> None:
    """Adding something that is not a VideoRequest is a ValidationError."""
    async with client(sim) as c, c.open_batch() as batch:
        with pytest.raises(ValidationError, match="request"):
            batch.add({"model": "x"})  # type: ignore[arg-type]
        batch.close()
