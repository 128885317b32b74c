"""The ``omnivid`` command line (also ``python -m omnivid``).

Commands::

    omnivid batch JOBS.jsonl --out DIR [--provider P] [--max-in-flight N] [--max-cost X]
                  [--simulate] [--resubmit-ambiguous] [--strict]
    omnivid generate PROMPT --model M [--image PATH_OR_URL]... [--video ...] [--duration D]
                  --out DIR [--simulate]
    omnivid status TASK_ID --provider P [--json]
    omnivid download TASK_ID --provider P --out DIR [--overwrite]
    omnivid models [--json]
    omnivid sim [simulator options]            (see ``omnivid sim --help``)

Exit status: 0 when everything succeeded, 1 when a job or task failed, 2 for a usage, input or
configuration error (printed as one ``omnivid: error: ...`` line, never a traceback), 130 after
Ctrl-C (143 after SIGTERM), once the task ids still running have been printed.

API keys come only from the environment (``APIMART_API_KEY``, ``EVOLINK_API_KEY``); base URLs
from ``--base-url`` or ``OMNIVID_<PROVIDER>_BASE_URL``. ``--simulate`` runs against an
in-process simulator instead, with no key at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from .. import __version__
from .._client import AsyncClient
from .._models import Task, TaskStatus, VideoRequest, converter
from ..errors import (
    ConfigurationError,
    OmnividError,
    TaskTimeoutError,
    ValidationError,
)
from ..providers import Provider, all_models, get_provider, list_providers, provider_for_model
from ._env import Endpoint, parse_base_urls, real_endpoints, simulated_endpoints
from ._jobs import UsageError
from ._progress import ProgressMode, TaskDisplay, rich_available

__all__ = ["DEFAULT_SIM_TIME_SCALE", "Interrupted", "build_parser", "main"]

DEFAULT_SIM_TIME_SCALE = 0.01
"""Real seconds per simulated second with ``--simulate`` (a 240 s task takes 2.4 s)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; ``code`` is the exit status to use (130 or 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``omnivid: error: ...`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"omnivid: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# -- argument parsing ------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _duration(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds or 'auto'") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (``omnivid sim`` only declares itself here)."""
    providers = [p.name for p in list_providers()]

    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log HTTP details to stderr")

    connection = _Parser(add_help=False)
    connection.add_argument(
        "--base-url",
        action="append",
        default=[],
        metavar="[PROVIDER=]URL",
        help="send requests to URL instead of the provider's public API (repeatable; also "
        "OMNIVID_APIMART_BASE_URL / OMNIVID_EVOLINK_BASE_URL)",
    )
    connection.add_argument(
        "--time-scale",
        "--sim-time-scale",
        dest="time_scale",
        type=_positive_float,
        default=None,
        metavar="S",
        help="real seconds per provider second, for simulators running faster than real time "
        f"(default 1, or {DEFAULT_SIM_TIME_SCALE} with --simulate)",
    )

    progress = _Parser(add_help=False)
    progress.add_argument(
        "--progress",
        choices=["auto", "bar", "log", "quiet"],
        default="auto",
        help="a live bar (needs rich and a terminal), log lines, or nothing (default: auto)",
    )

    simulate = _Parser(add_help=False)
    simulate.add_argument(
        "--simulate",
        action="store_true",
        help="run against an in-process simulator: no API key, nothing billed",
    )
    simulate.add_argument(
        "--sim-seed", type=int, default=None, metavar="N", help="seed of the simulator"
    )

    parser = _Parser(
        prog="omnivid",
        description="Generate short videos through APIMart and EvoLink.",
        epilog="Keys: APIMART_API_KEY, EVOLINK_API_KEY. Try it without one: "
        "omnivid batch examples/prompts.jsonl --simulate --out runs/demo",
    )
    parser.add_argument("--version", action="version", version=f"omnivid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    batch = sub.add_parser(
        "batch",
        parents=[common, connection, progress, simulate],
        help="run every job of a JSONL file, resumable",
        description="Run one video job per line of JOBS (JSON objects with model, prompt, "
        "images, videos, duration, ..., and optional key and provider). A journal in DIR makes "
        "a rerun resume: finished jobs are not paid for again, running ones are polled. "
        "A line without key is keyed by its line number.",
    )
    batch.add_argument("jobs", metavar="JOBS.jsonl", help="the batch file")
    batch.add_argument(
        "--out", required=True, metavar="DIR", help="results.jsonl, videos/ and the journal"
    )
    batch.add_argument(
        "--provider",
        choices=providers,
        help="for lines that name none (default: the provider offering the model)",
    )
    batch.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=16,
        metavar="N",
        help="tasks running at once per provider (default 16)",
    )
    batch.add_argument(
        "--max-cost",
        action="append",
        default=[],
        metavar="[PROVIDER=]X",
        help="stop submitting once X would be spent, per provider, in its billing unit "
        "(APIMart currency, EvoLink credits); repeatable",
    )
    batch.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="tasks per job at most: a transient failure (quota, upstream timeout) is "
        "submitted again until N (default 3; 1 never resubmits)",
    )
    batch.add_argument(
        "--resubmit-ambiguous",
        action="store_true",
        help="resubmit jobs whose submit may have been accepted (may pay twice)",
    )
    batch.add_argument(
        "--strict", action="store_true", help="stop before running anything if a line is bad"
    )
    batch.add_argument(
        "--journal", metavar="PATH", help="journal file (default DIR/journal.sqlite)"
    )
    batch.add_argument(
        "--max-downloads",
        type=_positive_int,
        default=4,
        metavar="N",
        help="videos downloaded at once (default 4)",
    )

    gen = sub.add_parser(
        "generate",
        parents=[common, connection, progress, simulate],
        help="generate one video and download it",
        description="Submit one job, show its progress, and save its video(s) into DIR. "
        "The paths are printed on stdout.",
    )
    gen.add_argument("prompt", metavar="PROMPT", nargs="?", default=None)
    gen.add_argument("--model", "-m", required=True, help="see `omnivid models`")
    gen.add_argument("--out", required=True, metavar="DIR", help="where to save the video(s)")
    gen.add_argument("--provider", choices=providers, help="default: the one offering --model")
    gen.add_argument(
        "--image", action="append", default=[], metavar="PATH_OR_URL", help="repeatable"
    )
    gen.add_argument(
        "--video", action="append", default=[], metavar="PATH_OR_URL", help="repeatable"
    )
    gen.add_argument("--duration", type=_duration, metavar="SECONDS|auto")
    gen.add_argument("--aspect-ratio", metavar="W:H")
    gen.add_argument("--resolution")
    gen.add_argument("--generation-type", choices=["frame", "reference"])
    gen.add_argument("--extend-from", metavar="TASK_ID")
    gen.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop waiting after this long (the task goes on at the provider)",
    )

    status = sub.add_parser(
        "status",
        parents=[common, connection],
        help="show a task",
        description="Fetch a task's state from the provider.",
    )
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--provider", choices=providers, required=True)
    status.add_argument("--json", action="store_true", help="print the task as JSON")

    download = sub.add_parser(
        "download",
        parents=[common, connection],
        help="download a completed task's videos",
        description="Save a completed task's video(s) into DIR; the paths go to stdout.",
    )
    download.add_argument("task_id", metavar="TASK_ID")
    download.add_argument("--provider", choices=providers, required=True)
    download.add_argument("--out", required=True, metavar="DIR")
    download.add_argument("--overwrite", action="store_true", help="replace existing files")

    models = sub.add_parser(
        "models", help="list providers, models and their rules", description="List models."
    )
    models.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser(
        "sim",
        help="run the provider simulator (python -m omnivid.testing)",
        description="Run the simulator; every argument goes to it (omnivid sim --help).",
        add_help=False,
    )
    return parser


# -- entry point -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        return _sim(args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Callable[[argparse.Namespace], Awaitable[int]] | None = {
        "batch": _batch,
        "generate": _generate,
        "status": _status,
        "download": _download,
    }.get(args.command)
    with _logging(getattr(args, "verbose", False)):
        try:
            if command is None:
                return _models(args)
            return anyio.run(_interruptible, command, args)
        except Interrupted as exc:
            return exc.code
        except KeyboardInterrupt:
            print("omnivid: interrupted", file=sys.stderr)
            return 130
        except (UsageError, ConfigurationError, ValidationError) as exc:
            _error(str(exc))
            return EXIT_USAGE
        except OmnividError as exc:
            _error(str(exc))
            return EXIT_FAILED
        except OSError as exc:  # a file omnivid had to write or read: disk full, permissions
            where = f": {exc.filename}" if exc.filename else ""
            _error(f"{exc.strerror or exc}{where}")
            return EXIT_FAILED


def _error(message: str) -> None:
    print(f"omnivid: error: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """While a command runs, omnivid's log goes to stderr: every line with ``--verbose`` (never
    a key or a header), otherwise errors only, since the commands report warnings themselves."""
    logger = logging.getLogger("omnivid")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("omnivid: %(levelname)s %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def _interruptible(
    command: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    """Run ``command``; SIGINT/SIGTERM cancel it cleanly (its ``finally`` blocks and journal
    writes run), then :class:`Interrupted` carries the exit status."""
    received: list[int] = []
    result = EXIT_OK
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            try:
                receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                with receiver as signals:
                    async for signum in signals:
                        received.append(int(signum))
                        tg.cancel_scope.cancel()
                        return
            except NotImplementedError:  # no loop signal handlers (Windows): KeyboardInterrupt
                return

        tg.start_soon(watch_signals)
        args.interrupted = received
        try:
            result = await command(args)
        except Exception as exc:  # re-raised below, outside the task group's ExceptionGroup
            error = exc
        tg.cancel_scope.cancel()
    if received:
        raise Interrupted(received[0])
    if error is not None:
        raise error
    return result


def _time_scale(args: argparse.Namespace) -> float:
    if args.time_scale is not None:
        return float(args.time_scale)
    return DEFAULT_SIM_TIME_SCALE if getattr(args, "simulate", False) else 1.0


def _client(endpoint: Endpoint, time_scale: float) -> AsyncClient:
    return AsyncClient(
        endpoint.provider,
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        time_scale=time_scale,
    )


# -- batch -----------------------------------------------------------------------------------
async def _batch(args: argparse.Namespace) -> int:
    from ._batch import BatchCommand, run_batch

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
        journal=Path(args.journal) if args.journal else None,
        base_urls=tuple(args.base_url),
        time_scale=_time_scale(args),
        progress=args.progress,
        max_downloads=args.max_downloads,
    )
    return await run_batch(command, interrupted=args.interrupted)


# -- generate --------------------------------------------------------------------------------
async def _generate(args: argparse.Namespace) -> int:
    request = VideoRequest(
        model=args.model,
        prompt=args.prompt,
        images=tuple(args.image),
        videos=tuple(args.video),
        duration=args.duration,
        aspect_ratio=args.aspect_ratio,
        resolution=args.resolution,
        generation_type=args.generation_type,
        extend_from=args.extend_from,
    )
    provider = get_provider(args.provider) if args.provider else provider_for_model(args.model)
    provider.build_submit_body(request)  # every rule, before any traffic
    out = Path(args.out)
    scale = _time_scale(args)
    mode: ProgressMode = args.progress
    if args.simulate:
        async with simulated_endpoints(
            [provider.name], time_scale=scale, seed=args.sim_seed
        ) as endpoints:
            return await _generate_with(endpoints[provider.name], request, out, scale, mode, args)
    base_urls = parse_base_urls(args.base_url, [provider.name])
    endpoint = real_endpoints([provider.name], base_urls)[provider.name]
    return await _generate_with(endpoint, request, out, scale, mode, args)


async def _generate_with(
    endpoint: Endpoint,
    request: VideoRequest,
    out: Path,
    scale: float,
    mode: ProgressMode,
    args: argparse.Namespace,
) -> int:
    name = endpoint.provider
    hint = _hint(name, endpoint, args)
    async with _client(endpoint, scale) as client:
        with TaskDisplay(mode=mode) as display:
            task = await client.submit(request)
            display.note(f"submitted {name} task {task.id} ({request.model})")
            last = task
            try:
                with anyio.fail_after(args.timeout):
                    async for snapshot in client.watch(task):
                        last = snapshot
                        display.update(snapshot)
            except TimeoutError:
                raise TaskTimeoutError(
                    f"task {task.id} not finished after {args.timeout} s; it goes on at "
                    f"the provider: `omnivid status {task.id}{hint}`",
                    task=last,
                    provider=name,
                    model=request.model,
                    task_id=task.id,
                ) from None
            finally:
                if args.interrupted and not last.is_terminal and args.simulate:
                    display.note(f"interrupted: task {task.id} stops with the simulator")
                elif args.interrupted and not last.is_terminal:
                    display.note(
                        f"interrupted: task {task.id} is still running at {name}; check it "
                        f"with `omnivid status {task.id}{hint}` and fetch it with "
                        f"`omnivid download {task.id}{hint} --out {out}`"
                    )
        if last.status is not TaskStatus.COMPLETED:
            why = f"{last.error.code}: {last.error.message}" if last.error else "no reason given"
            print(f"omnivid: task {last.id} {last.status.value}: {why}", file=sys.stderr)
            return EXIT_FAILED
        paths = await client.download(last, out, overwrite=True)
    cost = ""
    if last.cost is not None:
        cost = f", cost {last.cost:.2f}"
    elif last.credits is not None:
        cost = f", {last.credits:g} credits"
    print(f"omnivid: task {last.id} completed{cost}", file=sys.stderr)
    for path in paths:
        print(path)
    return EXIT_OK


def _hint(name: str, endpoint: Endpoint, args: argparse.Namespace) -> str:
    if getattr(args, "simulate", False):
        return f" --provider {name}"
    extra = f" --base-url {name}={endpoint.base_url}" if endpoint.base_url else ""
    if args.time_scale is not None:
        extra += f" --time-scale {args.time_scale:g}"
    return f" --provider {name}{extra}"


# -- status and download ---------------------------------------------------------------------
def _endpoint_for(args: argparse.Namespace) -> Endpoint:
    provider: Provider = get_provider(args.provider)
    base_urls = parse_base_urls(args.base_url, [provider.name])
    return real_endpoints([provider.name], base_urls)[provider.name]


async def _status(args: argparse.Namespace) -> int:
    endpoint = _endpoint_for(args)
    async with _client(endpoint, _time_scale(args)) as client:
        task = await client.get(args.task_id)
    if args.json:
        print(json.dumps(_task_json(task), ensure_ascii=False, indent=2))
    else:
        print(_task_text(task))
    return EXIT_OK


async def _download(args: argparse.Namespace) -> int:
    endpoint = _endpoint_for(args)
    async with _client(endpoint, _time_scale(args)) as client:
        task = await client.get(args.task_id)
        if task.status is not TaskStatus.COMPLETED:
            if task.is_terminal:
                why = f"{task.error.code}: {task.error.message}" if task.error else "no reason"
                _error(f"task {task.id} {task.status.value} ({why}): nothing to download")
            else:
                _error(
                    f"task {task.id} is {task.status.value} ({task.progress}%): nothing to "
                    "download yet; try again when it has completed"
                )
            return EXIT_FAILED
        paths = await client.download(task, args.out, overwrite=args.overwrite)
    for path in paths:
        print(path)
    return EXIT_OK


def _task_json(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(task)
    data.pop("raw", None)
    return data


def _task_text(task: Task) -> str:
    rows: list[tuple[str, str]] = [
        ("task", task.id),
        ("provider", task.provider),
        ("model", task.model or "?"),
        ("status", f"{task.status.value} ({task.progress}%)"),
    ]
    if task.created_at:
        rows.append(("created", task.created_at.isoformat(timespec="seconds")))
    if task.completed_at:
        rows.append(("completed", task.completed_at.isoformat(timespec="seconds")))
    if task.estimated_seconds is not None and not task.is_terminal:
        rows.append(("estimate", f"{task.estimated_seconds:g} s"))
    if task.actual_seconds is not None:
        rows.append(("took", f"{task.actual_seconds:g} s"))
    if task.cost is not None or task.credits is not None:
        cost = f"{task.cost:.2f}" if task.cost is not None else "?"
        credits = f" ({task.credits:g} credits)" if task.credits is not None else ""
        rows.append(("cost", cost + credits))
    for video in task.videos:
        expires = (
            f" (expires {video.expires_at.isoformat(timespec='seconds')})"
            if video.expires_at
            else ""
        )
        rows.append(("video", video.url + expires))
    if task.error:
        rows.append(("error", f"{task.error.code}: {task.error.message}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# -- models ----------------------------------------------------------------------------------
def _models(args: argparse.Namespace) -> int:
    specs = all_models()
    if args.json:
        data = [
            {
                "provider": s.provider,
                "model": s.name,
                "summary": s.summary,
                "modes": list(s.modes),
                "rules": list(s.rules),
                "env_var": get_provider(s.provider).env_var,
            }
            for s in specs
        ]
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if sys.stdout.isatty() and rich_available():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="omnivid models", show_lines=True)
        table.add_column("provider")
        table.add_column("model", no_wrap=True)
        table.add_column("modes")
        table.add_column("rules")
        for s in specs:
            table.add_row(
                s.provider,
                f"{s.name}\n[dim]{s.summary}[/dim]",
                "\n".join(s.modes),
                "\n".join(s.rules),
            )
        Console().print(table)
        return EXIT_OK
    for s in specs:
        env_var = get_provider(s.provider).env_var
        print(f"{s.provider:<8}  {s.name}   (key: {env_var})")
        print(f"          {s.summary}")
        print(f"          modes: {', '.join(s.modes)}")
        for rule in s.rules:
            print(f"          - {rule}")
        print()
    return EXIT_OK


# -- sim -------------------------------------------------------------------------------------
def _sim(argv: list[str]) -> int:
    from ..testing.__main__ import main as sim_main

    try:
        return sim_main(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
