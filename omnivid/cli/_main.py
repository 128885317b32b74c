"""The entry point, :func:`main`: parse the command line, run the command, turn its errors into
one ``omnivid: error: ...`` line and an exit status (see :mod:`omnivid.cli`), stop it cleanly
on SIGINT or SIGTERM, send omnivid's log to stderr while it runs, and let the reader of stdout
go away early (``omnivid models | head -1``) without an error."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TextIO, cast

import anyio

from ..errors import ConfigurationError, OmnividError, ValidationError
from ._batch import batch
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from ._generate import generate
from ._jobs import UsageError
from ._list_models import models
from ._parser import build_parser
from ._results_cmd import results
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
    with _stdout_reader_may_leave():
        return _run(args_list)


def _run(args_list: list[str]) -> int:
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
        "results": results,
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


class _Stdout:
    """``sys.stdout`` while a command runs: once its reader has gone (a closed pipe), what is
    left to print is dropped, and the command ends as it would have otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stdout_reader_may_leave() -> Iterator[None]:
    """The standard way with a closed pipe (``omnivid models | head -1``), minus the exit status
    1 Python would give: no "Broken pipe" message, the command's own exit status. Once the pipe
    is found closed, stdout is pointed at /dev/null so that Python's last flush is quiet too."""
    real = sys.stdout
    wrapper = _Stdout(real)
    sys.stdout = cast(TextIO, wrapper)
    try:
        yield
    finally:
        sys.stdout = real
        wrapper.flush()
        if wrapper.gone:
            with contextlib.suppress(OSError, ValueError):  # no file descriptor (captured)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, real.fileno())
                os.close(devnull)


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
