"""B8 scale-out: three worker processes on one account with a server limit of R requests/s.

240 jobs of 30 simulated seconds (``[[duration=30]]``) at time scale 0.01 (0.3 s each) on a
simulator limiting the account to ``R = 40`` requests per real second (a bucket of R tokens;
429s carry ``Retry-After``). Each worker is its own process
(``python -m benchmarks.b8_scale_out worker ...``) running ``client.map`` with 16 jobs in flight
and no rate given (the gate finds the limit); contenders:

* **3 workers, one PostgreSQL batch**: each runs all 240 jobs on one shared batch
  (``journal=postgresql://...``, ``batch=``): claims, one budget, one rate limit per account
  (slots booked in the database, 429 cooldowns shared), in a database created for the run;
* **3 uncoordinated workers**: 80 jobs each, a SQLite journal each, nothing shared (how three
  ``omnivid batch`` processes on one account ran before);
* **1 worker**: the 240 jobs in one process (SQLite journal), for reference.

Every answer's arrival time (``time.monotonic()``, one clock for every process on the host) and
status is logged by an aiohttp trace in each worker. After a warm-up of ``W`` seconds, until the
batch's last submit was answered (after it only polls are left, and the load thins out)::

    achieved  = answers other than 429 in [W, last submit] / (last submit - W) / R  (>= 0.90)
    429 share = 429 answers in [W, last submit] / all answers in that span          (<= 0.02)
    double submissions = fingerprints the simulator created more than one task for    (0)

The database's cost per job: its round trips (journal and shared gate: every statement sent
and waited for) and the workers' CPU seconds, over the batch's jobs, next to the uncoordinated
workers' CPU per job.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
from attrs import define

from ._harness import ROOT, BenchResult, RequestLog, SimOptions, SimProcess, Table, Target, fmt

__all__ = ["run"]

MODEL = "gemini-omni-flash-preview"
RATE = 40.0
SCALE = 0.01
JOBS, QUICK_JOBS = 240, 60
WORKERS = 3
IN_FLIGHT = 16
WARMUP, QUICK_WARMUP = 3.0, 1.0
ADMIN_URL = os.environ.get(
    "OMNIVID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@define
class Contender:
    """One contender's run: the workers' answers, statistics and the simulator's ledger."""

    name: str
    jobs: int
    seconds: float
    answers: list[tuple[float, str, int]]
    workers: list[dict[str, Any]]
    double_submissions: int
    tasks: int
    started: float
    warmup: float

    def window(self) -> tuple[float, float]:
        """[warm-up end, last submit answered]."""
        posts = [t for t, method, status in self.answers if method == "POST" and status < 300]
        return self.started + self.warmup, max(posts) if posts else self.started

    @property
    def achieved(self) -> float:
        start, end = self.window()
        ok = sum(1 for t, _, s in self.answers if start <= t < end and s != 429)
        return ok / (end - start) / RATE if end > start else float("nan")

    @property
    def share_429(self) -> float:
        start, end = self.window()
        statuses = [s for t, _, s in self.answers if start <= t < end]
        return statuses.count(429) / len(statuses) if statuses else float("nan")

    @property
    def share_429_total(self) -> float:
        statuses = [s for _, _, s in self.answers]
        return statuses.count(429) / len(statuses) if statuses else float("nan")

    @property
    def achieved_total(self) -> float:
        if not self.answers:
            return float("nan")
        span = max(t for t, _, _ in self.answers) - self.started
        return sum(1 for _, _, s in self.answers if s != 429) / span / RATE

    def per_job(self, field: str) -> float:
        return sum(float(w["stats"].get(field, 0.0)) for w in self.workers) / self.jobs


# -- a worker process ---------------------------------------------------------------------------
async def _worker(args: argparse.Namespace) -> None:
    import omnivid

    from ._baselines import session

    first, last = (int(x) for x in args.keys.split(":"))
    requests = [
        (f"k{i}", omnivid.VideoRequest(model=MODEL, prompt=f"b8 job {i} [[duration=30]]"))
        for i in range(first, last)
    ]
    log = RequestLog()
    journal: Any = args.journal
    if args.batch:
        from omnivid.journal import PostgresJournal

        journal = await PostgresJournal.open(args.journal, batch=args.batch, preload=False)
    cpu, started = time.process_time(), time.perf_counter()
    async with session(trace=[log.trace_config()]) as http:
        client = omnivid.AsyncClient(
            "apimart", api_key=args.api_key, base_url=args.base_url, session=http,
            time_scale=SCALE,
        )  # fmt: skip
        async with client, client.map(requests, journal=journal, max_in_flight=IN_FLIGHT) as out:
            outcomes = [o async for o in out]
        stats = out.statistics().as_dict()
    stats["cpu"] = time.process_time() - cpu
    stats["seconds"] = time.perf_counter() - started
    stats["outcomes"] = len(outcomes)
    stats["ok"] = sum(o.ok for o in outcomes)
    if args.batch:
        stats["round_trips"] = journal.db.round_trips
        stats["worker"] = journal.worker
        await journal.aclose()
    Path(args.out).write_text(json.dumps({"stats": stats, "answers": log.records}))


def _start(sim: SimProcess, out: Path, journal: str, keys: str, batch: str | None) -> Any:
    cmd = [
        sys.executable, "-m", "benchmarks.b8_scale_out", "worker", "--journal", journal,
        "--base-url", sim.base_url("apimart"), "--api-key", sim.api_key, "--keys", keys,
        "--out", str(out), *(["--batch", batch] if batch else []),
    ]  # fmt: skip
    err = out.with_suffix(".err").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stderr=err)
    err.close()
    return proc


def _contender(
    name: str, jobs: int, plan: list[tuple[str, str, str | None]], quick: bool
) -> Contender:
    """Run the workers of ``plan`` ((journal, keys, batch) each) against a fresh simulator."""
    with SimProcess(SimOptions(time_scale=SCALE, rps=RATE, seed=8)) as sim:
        with tempfile.TemporaryDirectory(prefix="omnivid-b8-") as tmp:
            outs = [Path(tmp) / f"w{i}.json" for i in range(len(plan))]
            started = time.monotonic()
            procs = [
                _start(sim, out, journal.replace("{tmp}", tmp), keys, batch)
                for out, (journal, keys, batch) in zip(outs, plan, strict=True)
            ]
            for proc, out in zip(procs, outs, strict=True):
                if proc.wait(600) != 0:
                    err = out.with_suffix(".err").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name}: a worker failed: {err}")
            workers = [json.loads(out.read_text()) for out in outs]
        stats = sim.stats()
    answers = sorted(tuple(a) for w in workers for a in w.pop("answers"))  # type: ignore[misc]
    return Contender(
        name=name, jobs=jobs, seconds=time.monotonic() - started, answers=answers,
        workers=workers, double_submissions=len(stats["double_submissions"]),
        tasks=len(stats["tasks"]), started=started,
        warmup=QUICK_WARMUP if quick else WARMUP,
    )  # fmt: skip


def _database() -> str | None:
    """A new database for the run (its URL), or None when PostgreSQL is not reachable."""
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        name = f"omnivid_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = conninfo_to_dict(ADMIN_URL)
        user = f"{parts['user']}@" if parts.get("user") else ""
        return (
            f"postgresql://{user}{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}/{name}"
        )
    except Exception:
        return None


def _drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(quick: bool = False) -> BenchResult:
    """Run B8 and return its result."""
    begun = time.perf_counter()
    jobs = QUICK_JOBS if quick else JOBS
    share = jobs // WORKERS
    runs: list[Contender] = []
    notes: list[str] = []
    url = _database()
    if url is None:
        notes.append(f"PostgreSQL not reachable at {ADMIN_URL}: the shared contender was not run")
    else:
        try:
            shared = [(url, f"0:{jobs}", "b8") for _ in range(WORKERS)]
            runs.append(_contender("3 workers, one PostgreSQL batch", jobs, shared, quick))
        finally:
            _drop(url)
    alone = [
        ("{tmp}/" + f"w{i}.sqlite", f"{i * share}:{(i + 1) * share}", None) for i in range(WORKERS)
    ]
    runs.append(_contender("3 uncoordinated workers (SQLite)", jobs, alone, quick))
    runs.append(
        _contender("1 worker (SQLite)", jobs, [("{tmp}/w.sqlite", f"0:{jobs}", None)], quick)
    )

    table = Table(
        ["contender", "achieved / R (after warm-up)", "429 share (after warm-up)",
         "achieved / R (whole run)", "429 share (whole run)", "double submissions",
         "tasks", "wall s", "DB round trips / job", "client CPU ms / job"]
    )  # fmt: skip
    for c in runs:
        trips = c.per_job("round_trips") if "round_trips" in c.workers[0]["stats"] else None
        table.add(
            c.name, f"{100 * c.achieved:.1f} %", f"{100 * c.share_429:.2f} %",
            f"{100 * c.achieved_total:.1f} %", f"{100 * c.share_429_total:.2f} %",
            c.double_submissions, c.tasks, fmt(c.seconds), "-" if trips is None else fmt(trips),
            fmt(1000 * c.per_job("cpu"), 2),
        )  # fmt: skip
    targets = []
    if url is not None:
        s = runs[0]
        targets = [
            Target(">= 90% of R after warm-up", f"{100 * s.achieved:.1f} %", s.achieved >= 0.9),
            Target("<= 2% 429s after warm-up", f"{100 * s.share_429:.2f} %", s.share_429 <= 0.02),
            Target("0 double submissions", str(s.double_submissions), s.double_submissions == 0),
        ]
        notes.append(
            f"the database's cost per job: {s.per_job('round_trips'):.1f} round trips (journal "
            "and shared gate: each request's slot is booked there) and "
            f"{1000 * (s.per_job('cpu') - runs[1].per_job('cpu')):.2f} ms more client CPU than an "
            "uncoordinated worker's"
        )
    notes.append(
        f"R = {RATE:g} requests/s per key, bucket R; {jobs} jobs of 30 simulated s at time "
        f"scale {SCALE}; {IN_FLIGHT} in flight per worker; warm-up "
        f"{QUICK_WARMUP if quick else WARMUP:g} s; one simulator process per contender"
    )
    result = BenchResult(
        "b8",
        "scale-out: three workers on one account",
        params={"R": RATE, "jobs": jobs, "workers": WORKERS, "time_scale": SCALE},
        tables=[table],
        targets=targets,
        notes=notes,
        data={"runs": [attrs.asdict(c, filter=lambda a, _: a.name != "answers") for c in runs]},
    )
    result.seconds = time.perf_counter() - begun
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b8_scale_out")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="one worker process (used by the benchmark)")
    for flag in ("--journal", "--base-url", "--api-key", "--keys", "--out"):
        worker.add_argument(flag, required=True)
    worker.add_argument("--batch", default=None)
    anyio.run(_worker, parser.parse_args())
