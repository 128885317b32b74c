"""The entry point, :func:`main`: parse the command line, run the command, turn its errors into
one ``omnivid: error: ...`` line and an exit status (see :mod:`omnivid.cli`), stop it cleanly
on SIGINT or SIGTERM, and send omnivid's log to stderr while it runs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence

import anyio

from ..errors import ConfigurationError, OmnividError, ValidationError
from ._batch import batch
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from ._generate import generate
from ._jobs import UsageError
from ._list_models import models
from ._parser import build_parser
from ._sim import sim
from ._tasks import download, status

__all__ = ["Interrupted", "main"]


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; ``code`` is the exit status to use (130 or 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        return sim(args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Callable[[argparse.Namespace], Awaitable[int]] | None = {
        "batch": batch,
        "generate": generate,
        "status": status,
        "download": download,
    }.get(args.command)
    with _logging(getattr(args, "verbose", False)):
        try:
            if command is None:
                return models(args)
            return anyio.run(_interruptible, command, args)
        except Interrupted as exc:
            return exc.code
        except KeyboardInterrupt:
            print("omnivid: interrupted", file=sys.stderr)
            return 130
        except (UsageError, ConfigurationError, ValidationError) as exc:
            error(str(exc))
            return EXIT_USAGE
        except OmnividError as exc:
            error(str(exc))
            return EXIT_FAILED
        except OSError as exc:  # a file omnivid had to write or read: disk full, permissions
            where = f": {exc.filename}" if exc.filename else ""
            error(f"{exc.strerror or exc}{where}")
            return EXIT_FAILED


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
    failure: Exception | None = None
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
            failure = exc
        tg.cancel_scope.cancel()
    if received:
        raise Interrupted(received[0])
    if failure is not None:
        raise failure
    return result
