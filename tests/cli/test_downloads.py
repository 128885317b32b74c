"""The batch command's download queue: soonest-expiring first, concurrency that follows the
backlog, and back-pressure on submits (``wait_room``) and on outcomes (``put``). Downloads
here are coroutines waiting on events, and the clock is a number the test moves: nothing
sleeps."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from omnivid.cli._downloads import DownloadQueue


class Gate:
    """Downloads that wait until the test lets them finish, recording their order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self._release: dict[str, anyio.Event] = {}

    async def save(self, item: str) -> None:
        self.started.append(item)
        event = self._release.setdefault(item, anyio.Event())
        await event.wait()
        self.finished.append(item)

    def release(self, *items: str) -> None:
        for item in items:
            self._release.setdefault(item, anyio.Event()).set()

    def release_all(self) -> None:
        for item in self.started:
            self.release(item)


async def instant(item: str) -> None:
    """A download that ends at once."""
    await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_soonest_expiring_first() -> None:
    """Waiting downloads start in the order their URLs expire; one without expiry comes last."""
    queue: DownloadQueue[str] = DownloadQueue(floor=1, ceiling=1)
    order: list[str] = []

    async def save(item: str) -> None:
        order.append(item)
        await anyio.lowlevel.checkpoint()

    for item, expires in [("c", 30.0), ("none", None), ("a", 10.0), ("b", 20.0), ("a2", 10.0)]:
        await queue.put(item, expires=expires)
    queue.close()
    await queue.run(save)
    assert order == ["a", "a2", "b", "c", "none"]


@pytest.mark.anyio
async def test_concurrency_follows_the_backlog() -> None:
    """4 at once with a small backlog, up to the ceiling as it grows, back down as it drains."""
    queue: DownloadQueue[str] = DownloadQueue(floor=4, ceiling=16, high=1000)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run, gate.save)
        for i in range(10):
            await queue.put(f"j{i}")
        await wait_all_tasks_blocked()
        assert (queue.running, queue.target) == (4, 4)  # ceil(10 / 4) = 3 -> the floor
        for i in range(10, 100):
            await queue.put(f"j{i}")
        await wait_all_tasks_blocked()
        assert (queue.running, queue.target) == (16, 16)  # ceil(100 / 4) = 25 -> the ceiling
        while queue.backlog > 12:
            gate.release_all()
            await wait_all_tasks_blocked()
        assert queue.target == 4 and queue.running <= 4 + 3  # lower as the running end
        gate.release_all()
        queue.close()
        while queue.backlog:
            gate.release_all()
            await wait_all_tasks_blocked()
    assert sorted(gate.finished) == sorted(f"j{i}" for i in range(100))
    assert queue.peak == 100 and queue.peak_target == 16


@pytest.mark.anyio
async def test_a_full_backlog_holds_submits_until_it_drains() -> None:
    """At ``high`` downloads in the backlog, ``wait_room`` waits (no job is taken, so nothing
    is submitted) until the backlog is down to ``low``."""
    queue: DownloadQueue[str] = DownloadQueue(floor=1, ceiling=1, high=4, low=2)
    gate = Gate()
    taken: list[int] = []

    async def submitter() -> None:  # what `omnivid batch` does before taking each job
        for n in range(8):
            await queue.wait_room()
            taken.append(n)
            await queue.put(f"j{n}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run, gate.save)
        tg.start_soon(submitter)
        await wait_all_tasks_blocked()
        assert taken == [0, 1, 2, 3] and queue.full and queue.held == 1
        gate.release("j0")  # backlog 3: still above low
        await wait_all_tasks_blocked()
        assert taken == [0, 1, 2, 3] and queue.full
        gate.release("j1")  # backlog 2: room again, until it is full once more
        await wait_all_tasks_blocked()
        assert taken == [0, 1, 2, 3, 4, 5] and queue.full and queue.held == 2
        queue.close()
        gate.release(*(f"j{n}" for n in range(8)))
    assert taken == list(range(8)) and len(gate.finished) == 8


@pytest.mark.anyio
async def test_put_waits_beyond_twice_high() -> None:
    """Whatever the producers do, ``put`` waits while ``2 x high`` downloads wait, so the
    batch stops taking outcomes (and ``map``'s window stops its submits)."""
    queue: DownloadQueue[str] = DownloadQueue(floor=1, ceiling=1, high=3)
    gate = Gate()
    put: list[int] = []

    async def producer() -> None:
        for n in range(10):
            await queue.put(f"j{n}")
            put.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run, gate.save)
        tg.start_soon(producer)
        await wait_all_tasks_blocked()
        assert queue.waiting == 6 and queue.running == 1 and put == list(range(7))
        gate.release("j0")
        await wait_all_tasks_blocked()
        assert put == list(range(8))
        queue.close()
        for n in range(10):
            gate.release(f"j{n}")
    assert len(gate.finished) == 10


@pytest.mark.anyio
async def test_slow_downloads_against_short_lived_urls_hold_submits() -> None:
    """Below ``high``, the queue is full when draining it would take over a quarter of the
    shortest URL lifetime: backlog x duration / running > lifetime / 4."""
    now = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    queue: DownloadQueue[str] = DownloadQueue(floor=1, ceiling=1, high=100, clock=clock)

    async def save(item: str) -> None:
        now[0] += 1.0  # each download takes one second
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run, save)
        await queue.put("first", lifetime=12.0)
        await wait_all_tasks_blocked()
        assert queue.duration == 1.0 and not queue.full
        for n in range(4):  # backlog 4 x 1 s > 12 s / 4
            await queue.put(f"j{n}", lifetime=12.0)
        assert queue.full
        await wait_all_tasks_blocked()  # drained: room again
        assert not queue.full and queue.backlog == 0
        queue.close()


@pytest.mark.anyio
async def test_samples_record_the_backlog_over_time() -> None:
    """The queue samples its backlog at most once a second of its clock."""
    now = [0.0]
    queue: DownloadQueue[str] = DownloadQueue(floor=2, ceiling=2, clock=lambda: now[0])
    for n in range(5):
        now[0] += 0.4
        await queue.put(f"j{n}")
    queue.close()
    await queue.run(instant)
    assert [s.at for s in queue.samples] == pytest.approx([0.4, 1.6])
    assert queue.samples[0].waiting == 1 and queue.samples[1].waiting == 4
