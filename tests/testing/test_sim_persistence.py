"""The simulator's lifecycle under cancellation, and its state kept in a file (``state_file``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from simhelp import body, create, poll, submit, task_data

from omnivid.errors import ConfigurationError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio


async def test_close_while_cancelled_leaves_no_cancel_scope_open() -> None:
    """A block running a simulator, cancelled from outside (Ctrl-C), ends without a RuntimeError."""
    with anyio.CancelScope() as outer:
        async with Simulator(time_scale=0.001) as sim:
            outer.cancel()
            await anyio.sleep(5)  # cancelled at once
    assert outer.cancelled_caught
    with pytest.raises(OSError):  # and its server is gone
        await anyio.connect_tcp("127.0.0.1", sim.port)


async def test_tasks_survive_a_restart(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A simulator started on the file of a closed one serves its tasks: running, ended, failed."""
    path = tmp_path / "sim.sqlite"
    async with Simulator(time_scale=1.0, state_file=path) as first:
        running = await create(http, first, "apimart", markers="[[duration=1000]]")
        done = await create(http, first, "evolink", markers="[[duration=10]]", duration=4)
        failed = await create(http, first, "apimart", markers="[[duration=10]] [[fail:quota]]")
        first.advance(500)
        before = task_data("apimart", await (await poll(http, first, "apimart", running)).json())
    async with Simulator(time_scale=1.0, state_file=path) as second:
        assert second.now() >= first.now() - 1  # the clock goes on from the file
        after = task_data("apimart", await (await poll(http, second, "apimart", running)).json())
        assert (after["status"], after["progress"]) == (before["status"], before["progress"])
        assert second.task_status(done) == "completed"
        assert second.task_status(failed) == "failed"
        video = await http.get(second.file_url(done))
        assert video.status == 200 and (await video.read())[4:8] == b"ftyp"
        assert second.in_flight() == 1
        second.advance(600)
        assert second.task_status(running) == "completed"
        assert second.stats.tasks == [running, done, failed, *second.stats.tasks[3:]]


async def test_task_is_on_file_before_its_submit_is_answered(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A copy of the file taken as soon as the answer arrives (a SIGKILL then) holds the task."""
    path = tmp_path / "sim.sqlite"
    copy = tmp_path / "copy.sqlite"
    async with Simulator(time_scale=0.001, state_file=path) as sim:
        for provider in ("apimart", "evolink"):
            task_id = await create(http, sim, provider, markers="[[duration=100000]]")
            shutil.copyfile(path, copy)  # what a kill -9 right now would leave
            async with Simulator(time_scale=0.001, state_file=copy) as revived:
                assert revived.task_status(task_id) in ("pending", "processing")
                resp = await poll(http, revived, provider, task_id)
                assert resp.status == 200


async def test_ledgers_and_balances_are_rebuilt(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Money held and spent per key and the tasks per fingerprint come back after a restart."""
    path = tmp_path / "sim.sqlite"
    options: dict[str, Any] = {"time_scale": 1.0, "budgets": {"sk-omnivid-sim": 2.0}}
    async with Simulator(state_file=path, **options) as first:
        await create(http, first, "apimart", markers="[[duration=10]]")
        await create(http, first, "apimart", markers="[[duration=1000]]")
        first.advance(20)
        balance = first.balance(first.api_key)
        assert balance == pytest.approx(1.2)  # 0.4 spent, 0.4 held
    async with Simulator(state_file=path, **options) as second:
        assert second.balance(second.api_key) == pytest.approx(balance)
        assert second.stats.total_cost == pytest.approx(0.4)
        await create(http, second, "apimart", markers="[[duration=10]]")  # the same body again
        assert list(second.stats.double_submissions.values()) == [2]


async def test_a_restart_continues_the_random_source(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Seeded, a stopped and restarted simulator draws what one uninterrupted run draws."""
    async with Simulator(time_scale=1.0, seed=5, estimate_error=0.9) as whole:
        straight = [await create(http, whole, "evolink") for _ in range(2)]
    path = tmp_path / "sim.sqlite"
    restarted = []
    for _ in range(2):
        async with Simulator(time_scale=1.0, seed=5, estimate_error=0.9, state_file=path) as sim:
            restarted.append(await create(http, sim, "evolink"))
    assert [i.rsplit("-", 1)[1] for i in restarted] == [i.rsplit("-", 1)[1] for i in straight]


async def test_a_fault_marker_fires_once_across_restarts(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A ``[[fault:500]]`` that fired before the restart does not fire again after it."""
    path = tmp_path / "sim.sqlite"
    payload = body("apimart", "[[fault:500]]")
    async with Simulator(time_scale=1.0, state_file=path) as first:
        assert (await submit(http, first, "apimart", payload)).status == 500
    async with Simulator(time_scale=1.0, state_file=path) as second:
        assert (await submit(http, second, "apimart", payload)).status == 200


async def test_a_file_in_use_is_refused_at_once(tmp_path: Path) -> None:
    """A second simulator on a file a running one holds fails with ConfigurationError."""
    path = tmp_path / "sim.sqlite"
    async with Simulator(state_file=path):
        with pytest.raises(ConfigurationError, match="in use by another simulator"):
            async with Simulator(state_file=path):
                pass


async def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    """A file that is not a simulator state is refused, naming it and the way out."""
    path = tmp_path / "sim.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigurationError, match=r"sim\.sqlite.*delete it"):
        async with Simulator(state_file=path):
            pass


async def test_a_restart_listens_on_the_same_port(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Restarted on its file, the simulator takes its old port, so old result URLs still work;
    a port taken meanwhile is given up for a free one."""
    path = tmp_path / "sim.sqlite"
    async with Simulator(time_scale=1.0, state_file=path) as first:
        task_id = await create(http, first, "apimart", markers="[[duration=10]]")
        first.advance(20)
        url = first.file_url(task_id)
    async with Simulator(time_scale=1.0, state_file=path) as second:
        assert second.port == first.port
        assert (await http.get(url)).status == 200
    blocker = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=first.port)
    async with blocker, Simulator(time_scale=1.0, state_file=path) as third:
        assert third.port != first.port
        assert (await http.get(third.file_url(task_id))).status == 200
