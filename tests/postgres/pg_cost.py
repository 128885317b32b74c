"""What the PostgreSQL side costs per job and per rate slot: round trips and client CPU.

    python tests/postgres/pg_cost.py [--jobs 2000] [--in-flight 1,50] [--acquires 2000]

For each ``--in-flight`` level it runs ``--jobs`` job cycles, that many at a time, each
``claim`` + ``write_intent`` + ``write_submitted`` + ``record_finished`` (the lazy record
committed by the background writer, grouped with the other jobs' as in a batch), the same
without the ``claim`` (the protocol's path: the intent claims the job), then
``--acquires`` calls of ``PostgresGateState.acquire``. It reports per cycle and per acquire:

* round trips: requests sent and waited for (``Database.round_trips``, counted at each call
  site); cross-checked with the server's committed transactions (``pg_stat_database``);
* client CPU: ``time.process_time()`` of this process (asyncio, psycopg, omnivid; the server
  runs in its own processes and is not counted);
* wall time.

It runs in a database of its own (created and dropped) on ``OMNIVID_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from omnivid import Task, TaskStatus, VideoRequest
from omnivid.journal._postgres import PostgresJournal
from omnivid.journal._postgres_gate import PostgresGateState

ADMIN = os.environ.get("OMNIVID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


async def _cycle(journal: PostgresJournal, i: int, claim: bool) -> None:
    key = f"k{i}"
    request = VideoRequest(model="Omni-Flash-Ext", prompt=f"a fox {i}", duration=6)
    fingerprint, text = request.fingerprint_and_json()
    if claim:
        taken = await journal.claim(
            key, request, provider="apimart", fingerprint=fingerprint, request_json=text
        )
        assert taken.status == "claimed"
    written = await journal.write_intent(
        key, request, provider="apimart", fingerprint=fingerprint, run="r", new=not claim,
        request_json=text, reserved=0.4,
    )  # fmt: skip
    assert written
    task = Task(id=f"t{i}", provider="apimart", model=request.model, status=TaskStatus.PENDING)
    await journal.write_submitted(key, task, task_ids=[task.id], attempts=1)
    body = f'{{"code":200,"data":{{"id":"t{i}","status":"completed","progress":100}}}}'
    done = Task(id=f"t{i}", provider="apimart", model=request.model, status=TaskStatus.COMPLETED)
    journal.record_finished(key, done, cost=0.4, body=body)


async def jobs(url: str, count: int, in_flight: int, claim: bool) -> dict[str, float]:
    """Per-cycle figures for ``count`` cycles, ``in_flight`` at a time (``claim``: each job
    claimed first; else the protocol's path, the intent claiming it)."""
    batch = f"cost-{in_flight}-{claim}"
    journal = await PostgresJournal.open(url, batch=batch, pool_size=8)
    commits, trips = _commits(url), journal.db.round_trips
    cpu, wall = time.process_time(), time.perf_counter()
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            await _cycle(journal, i, claim)

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    await journal.aflush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    trips = journal.db.round_trips - trips
    await journal.aclose()
    commits = _commits(url) - commits - 1  # the open's budget row
    return {
        "round_trips": trips / count,
        "commits": commits / count,
        "cpu_us": cpu / count * 1e6,
        "wall_us": wall / count * 1e6,
    }


async def acquires(url: str, count: int) -> dict[str, float]:
    """Per-acquire figures for ``count`` sequential bookings."""
    gate = await PostgresGateState.open(url)
    account = f"cost {secrets.token_hex(4)}"
    await gate.acquire(account, 1e6)  # creates the row
    trips = gate.db.round_trips
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await gate.acquire(account, 1e6)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    trips = gate.db.round_trips - trips
    await gate.aclose()
    return {
        "round_trips": trips / count,
        "cpu_us": cpu / count * 1e6,
        "wall_us": wall / count * 1e6,
    }


async def measure(count: int, levels: list[int], slots: int) -> dict[str, dict[str, float]]:
    """Every figure, in a database created for the run and dropped after it."""
    name = f"omnivid_cost_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(ADMIN, dbname=name)
    try:
        found: dict[str, dict[str, float]] = {}
        for claim in (True, False):
            for level in levels:
                what = f"{'claim+' if claim else ''}intent+submitted+finished, {level} in flight"
                found[what] = await jobs(url, count, level, claim)
        found["acquire"] = await acquires(url, slots)
        return found
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--in-flight", default="1,50")
    parser.add_argument("--acquires", type=int, default=2000)
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.in_flight.split(",")]
    results: Any = asyncio.run(measure(args.jobs, levels, args.acquires))
    for what, figures in results.items():
        shown = "  ".join(f"{k}={v:.2f}" for k, v in figures.items())
        print(f"{what:48} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
