"""One worker of a shared batch, as its own process (for the multi-process tests and B8):
``client.map`` over jobs ``k0 .. kN-1`` on a PostgreSQL journal, against a simulator running
in another process. Each outcome is written to ``--out`` as a JSON line as soon as it arrives
(flushed: a worker killed mid-run leaves the lines so far), then a last line
``{"done": true, "stats": ...}``.

    python tests/postgres/pg_worker.py --journal URL --batch NAME --base-url URL \\
        --api-key KEY --jobs 60 --out worker.jsonl [--lease 1.0] [--max-in-flight 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anyio

import omnivid
from omnivid.journal import PostgresJournal

MODEL = "gemini-omni-flash-preview"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--worker", default=None)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--max-cost", type=float, default=None)
    parser.add_argument("--prompt", default="worker job")
    return parser


async def main(args: argparse.Namespace) -> None:
    """Run the map and write its outcomes."""
    journal = await PostgresJournal.open(
        args.journal, batch=args.batch, worker=args.worker, lease=args.lease, preload=False
    )
    requests = [
        (f"k{i}", omnivid.VideoRequest(model=MODEL, prompt=f"{args.prompt} {i}"))
        for i in range(args.jobs)
    ]
    client = omnivid.AsyncClient(
        "apimart",
        api_key=args.api_key,
        base_url=args.base_url,
        time_scale=args.time_scale,
        retry=omnivid.RetryPolicy(base_delay=0.01, max_delay=0.05),
    )
    started = time.perf_counter()
    cpu = time.process_time()
    with args.out.open("a", encoding="utf-8") as out:
        async with (
            client,
            client.map(
                requests,
                journal=journal,
                max_in_flight=args.max_in_flight,
                max_cost=args.max_cost,
                cost_estimate=1.0 if args.max_cost is not None else None,
            ) as outcomes,
        ):
            async for o in outcomes:
                line = {
                    "key": o.key,
                    "ok": o.ok,
                    "task_id": o.task_id,
                    "task_ids": list(o.task_ids),
                    "from_journal": o.from_journal,
                    "worker": o.worker,
                    "ambiguous": o.ambiguous,
                    "error": type(o.error).__name__ if o.error else None,
                }
                out.write(json.dumps(line) + "\n")
                out.flush()
        stats = outcomes.statistics().as_dict()
        stats["round_trips"] = journal.db.round_trips
        stats["seconds"] = time.perf_counter() - started
        stats["cpu"] = time.process_time() - cpu
        stats["worker"] = journal.worker
        out.write(json.dumps({"done": True, "stats": stats}) + "\n")
    await journal.aclose()


if __name__ == "__main__":
    anyio.run(main, _parser().parse_args())
