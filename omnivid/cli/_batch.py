"""``omnivid batch``: run a JSONL file of jobs through ``client.map`` with a journal, resumably.

Layout of the output directory::

    DIR/journal.sqlite   every job's key, request fingerprint, task ids and state (the resume)
    DIR/results.jsonl    one line per job (see :mod:`omnivid.cli._results`)
    DIR/videos/          KEY.mp4, named after the job's key made file-safe (see
                         :mod:`omnivid.cli._videos`), or TASK_ID.mp4 with --video-names task
    DIR/simulator.sqlite with --simulate: the simulator's tasks, clock and ledgers, so that a
                         rerun (even after kill -9) finds the tasks the journal recorded

One :class:`~omnivid.AsyncClient` and one ``map`` run per provider, concurrently, sharing the
journal. The batch file is read twice and never held: once to check every line (bad lines are
reported before anything runs), then lazily, each provider's ``map`` pulling its jobs as it has
room (:mod:`omnivid.cli._jobindex`); the run keeps state only for the jobs it is running, and
each job's row goes to results.jsonl when it ends (:mod:`omnivid.cli._results` says the order).

A video is downloaded as soon as its task completes, alongside the batch, soonest-expiring URL
first, 4 to ``--max-downloads`` at once as the backlog grows; no new task is submitted while
the backlog is full (:mod:`omnivid.cli._downloads`), so results are saved before their URLs
expire. A URL that expired anyway ends its job ``expired`` (:mod:`omnivid.cli._saving`). A rerun
downloads any completed job whose files are missing (an interrupted transfer resumes from its
``.part``). A failed download fails that job only.

Rerunning the same command resumes: finished jobs come back from the journal without any
request, submitted ones are polled, ambiguous ones (the submit may have been accepted but its
answer was lost) are reported and left alone unless ``--resubmit-ambiguous``.

Budgets are per provider, in its billing unit (APIMart currency, EvoLink credits):
``--max-cost X`` gives each provider X, ``--max-cost PROVIDER=X`` one provider.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ..journal import is_database_url
from ..providers import list_providers
from ._batch_run import BatchCommand, BatchRun
from ._common import time_scale
from ._env import Endpoint, parse_base_urls, real_endpoints, simulated_endpoints
from ._jobindex import JobIndex
from ._jobs import LineError, UsageError

__all__ = ["batch", "parse_max_cost", "run_batch"]


async def batch(args: argparse.Namespace) -> int:
    """Run ``omnivid batch`` with the parsed arguments; returns the exit status."""
    command = BatchCommand(
        jobs=Path(args.jobs),
        out=Path(args.out),
        provider=args.provider,
        max_in_flight=args.max_in_flight,
        max_cost=tuple(args.max_cost),
        max_attempts=args.max_attempts,
        simulate=args.simulate,
        sim_seed=args.sim_seed,
        resubmit_ambiguous=args.resubmit_ambiguous,
        strict=args.strict,
        journal=Path(args.journal) if args.journal and not is_database_url(args.journal) else None,
        journal_url=args.journal if is_database_url(args.journal) else None,
        batch=args.batch,
        base_urls=tuple(args.base_url),
        time_scale=time_scale(args),
        progress=args.progress,
        max_downloads=args.max_downloads,
        video_names=args.video_names,
    )
    return await run_batch(command, interrupted=args.interrupted)


async def run_batch(
    command: BatchCommand,
    *,
    interrupted: Sequence[int] = (),
    observe: Callable[[BatchRun], None] | None = None,
) -> int:
    """Run the batch; returns the exit status (0 every job ok, 1 otherwise). ``observe`` is
    given the run before it starts (benchmarks and tests watch its download queue)."""

    def report(error: LineError) -> None:
        print(f"omnivid: {command.jobs}: {error}", file=sys.stderr, flush=True)

    index = JobIndex.scan(
        command.jobs,
        default_provider=command.provider,
        naming=command.video_names,
        on_error=report,
    )
    if index.invalid and command.strict:
        raise UsageError(
            f"{index.invalid} bad line(s) in {command.jobs}; nothing was run (--strict)"
        )
    if command.batch is not None and command.journal_url is None:
        raise UsageError("--batch names a batch of a shared journal: --journal postgresql://...")
    if command.simulate and command.journal_url is not None:
        raise UsageError(
            "--simulate runs a simulator inside this process, which other workers cannot "
            "reach: run one for all (omnivid sim), then give each worker --base-url"
        )
    providers = index.providers
    budgets = parse_max_cost(command.max_cost, providers)
    if command.simulate:
        state_file = command.out / "simulator.sqlite"
        if command.journal_path.exists() and not state_file.exists():
            print(
                f"omnivid: {state_file} is missing, so the simulator starts empty: tasks the "
                f"journal {command.journal_path} recorded as running are unknown to it (404); "
                "use a new --out to start over",
                file=sys.stderr,
                flush=True,
            )
        async with simulated_endpoints(
            providers,
            time_scale=command.time_scale,
            seed=command.sim_seed,
            state_file=state_file,
        ) as endpoints:
            return await _start(BatchRun(command, index, budgets, interrupted), endpoints, observe)
    base_urls = parse_base_urls(command.base_urls, providers)
    endpoints = real_endpoints(providers, base_urls)
    return await _start(BatchRun(command, index, budgets, interrupted), endpoints, observe)


async def _start(
    run: BatchRun,
    endpoints: Mapping[str, Endpoint],
    observe: Callable[[BatchRun], None] | None,
) -> int:
    if observe is not None:
        observe(run)
    return await run.run(endpoints)


def parse_max_cost(values: Iterable[str], providers: Iterable[str]) -> dict[str, float]:
    """Read ``--max-cost`` values (``X`` for every provider, ``PROVIDER=X`` for one) into a
    budget per provider in use."""
    in_use = sorted(set(providers))
    known = {p.name for p in list_providers()}
    out: dict[str, float] = {}
    for value in values:
        name, sep, amount = value.rpartition("=")
        if sep and name not in known:
            raise UsageError(
                f"--max-cost {value!r}: unknown provider {name!r}; known: "
                f"{', '.join(sorted(known))}"
            )
        try:
            number = float(amount)
        except ValueError:
            raise UsageError(f"--max-cost {value!r}: {amount!r} is not a number") from None
        if not number >= 0 or number == float("inf"):
            raise UsageError(f"--max-cost {value!r}: must be 0 or more")
        for provider in [name] if sep else in_use:
            out[provider] = number
    return out
