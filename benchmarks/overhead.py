"""omnivid's own client CPU per job, with the HTTP session replaced by an in-process fake.

``python -m benchmarks.overhead [--jobs N] [--rounds R]``: a profiling aid, not one of the
issue's benchmarks (it has no target and writes no results file). B1 and B5 run the client and
the simulator on the same two cores, so their rounds move by 10-20% with the machine's load;
this probe keeps everything omnivid does per job (``client.map``, the scheduler, the transport,
parsing, the journal) and replaces only aiohttp's session: each request is answered from
bodies captured once from a real simulator (``--instant``, APIMart), after one event-loop
checkpoint. What remains is omnivid's own work, in one process, with little noise::

    CPU per job = client process CPU seconds / jobs          (median over rounds)

Contenders alternate within each round: ``map`` without a journal, then with one (a new
SQLite file per run), order reversed every other round.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
import anyio
import anyio.lowlevel
from multidict import CIMultiDict, CIMultiDictProxy

import omnivid

from ._harness import SimOptions, SimProcess
from ._omnivid import IMMEDIATE
from .b1_throughput import CONCURRENCY, MODEL, requests

__all__ = ["FakeSession", "capture", "main"]


class _Answer:
    """A canned response: status, headers and text, after one loop checkpoint."""

    def __init__(self, text: str, headers: CIMultiDictProxy[str]) -> None:
        self.status = 200
        self.headers = headers
        self._text = text

    async def __aenter__(self) -> Self:
        await anyio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def text(self, errors: str = "strict") -> str:
        return self._text


class FakeSession:
    """Stands in for ``aiohttp.ClientSession``: submits get new task ids, polls a completed task."""

    closed = False

    def __init__(self, captured: Mapping[str, Any]) -> None:
        self._task_id = str(captured["task_id"])
        self._submit = str(captured["submit"])
        self._task = str(captured["task"])
        self._submit_headers = CIMultiDictProxy(CIMultiDict(captured["submit_headers"]))
        self._task_headers = CIMultiDictProxy(CIMultiDict(captured["task_headers"]))
        self._count = 0

    def request(self, method: str, url: str, **_: Any) -> _Answer:
        if method == "POST":
            self._count += 1
            new_id = f"task_{self._count:026d}"
            return _Answer(self._submit.replace(self._task_id, new_id), self._submit_headers)
        task_id = url.rsplit("/", 1)[1]
        return _Answer(self._task.replace(self._task_id, task_id), self._task_headers)

    async def close(self) -> None:
        return None


async def _capture(base_url: str, api_key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession() as http:
        body = {"model": MODEL, "prompt": "capture"}
        async with http.post(f"{base_url}/v1/videos/generations", json=body, headers=headers) as r:
            submit, submit_headers = await r.text(), dict(r.headers)
        task_id = (await r.json(content_type=None))["data"][0]["task_id"]
        async with http.get(f"{base_url}/v1/tasks/{task_id}", headers=headers) as r:
            task, task_headers = await r.text(), dict(r.headers)
    return {
        "task_id": task_id,
        "submit": submit,
        "submit_headers": submit_headers,
        "task": task,
        "task_headers": task_headers,
    }


def capture() -> dict[str, Any]:
    """One submit and one poll of an instant task, as a real simulator answers them."""
    with SimProcess(SimOptions(instant=True)) as sim:
        return anyio.run(_capture, sim.base_url("apimart"), sim.api_key)


async def _run(captured: Mapping[str, Any], jobs: int, journal: Path | None) -> None:
    async with (
        omnivid.AsyncClient(
            "apimart",
            base_url="http://127.0.0.1:9/apimart",
            api_key="sk-overhead-probe",
            poll=IMMEDIATE,
            session=FakeSession(captured),  # type: ignore[arg-type]
        ) as client,
        client.map(requests(jobs), max_in_flight=CONCURRENCY, journal=journal) as outcomes,
    ):
        async for outcome in outcomes:
            if not outcome.ok:
                raise RuntimeError(f"job {outcome.key} failed: {outcome.error}")


def measure(captured: Mapping[str, Any], jobs: int, *, journal: bool) -> float:
    """Client CPU µs per job of one ``map`` run."""
    with tempfile.TemporaryDirectory(prefix="omnivid-overhead-") as tmp:
        path = Path(tmp) / "journal.sqlite" if journal else None
        gc.collect()
        started = time.process_time()
        anyio.run(_run, captured, jobs, path)
        return (time.process_time() - started) / jobs * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print omnivid's CPU per job without and with a journal."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    captured = capture()
    runs: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.rounds):
        for journal in (False, True) if i % 2 == 0 else (True, False):
            runs[journal].append(measure(captured, args.jobs, journal=journal))
    plain, journaled = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"omnivid's own CPU per job, {args.jobs:,} instant jobs, {args.rounds} rounds (median)")
    print(f"  map:             {plain:6.1f} µs   rounds {[round(x) for x in runs[False]]}")
    print(f"  map + journal:   {journaled:6.1f} µs   rounds {[round(x) for x in runs[True]]}")
    print(f"  journal adds:    {journaled - plain:6.1f} µs per job")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
