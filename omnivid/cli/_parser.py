"""The argument parser: every command's arguments, their help and their types."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from .. import __version__
from ..providers import list_providers
from ._common import DEFAULT_SIM_TIME_SCALE, EXIT_USAGE

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``omnivid: error: ...`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"omnivid: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


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
        "A line without key is keyed by its line number. DIR/results.jsonl gets one row per "
        "line, in the order jobs end: lines that cannot run first, then each job when it ends "
        "(one finished in an earlier run as soon as it is reached); after a stop, the jobs not "
        "finished last. Its line field gives the file order.",
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
        "--journal",
        metavar="PATH|URL",
        help="journal file (default DIR/journal.sqlite), or a postgresql:// URL: a batch shared "
        "by every process running it, on any host (see --batch)",
    )
    batch.add_argument(
        "--batch",
        metavar="NAME",
        default=None,
        help="with --journal postgresql://...: the shared batch's name (default: the jobs "
        "file's name without its extension)",
    )
    batch.add_argument(
        "--max-downloads",
        type=_positive_int,
        default=16,
        metavar="N",
        help="videos downloaded at once at most (default 16): 4 (or N if lower) while few "
        "wait, more as the backlog grows; no new task is submitted while the backlog is full",
    )
    batch.add_argument(
        "--video-names",
        choices=["key", "task"],
        default="key",
        help="name each video DIR/videos/KEY.mp4 after its job's key (default), or after its "
        "task id; a key that is not a safe file name (path separators, control or other "
        "characters, a leading dot, over 100 bytes) has them replaced by _ and a short hash of "
        "the key added, so every job keeps its own file",
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

    results = sub.add_parser(
        "results",
        parents=[common],
        help="print a shared batch's results (PostgreSQL journal)",
        description="Print one JSON line per job of a batch shared through PostgreSQL, with the "
        "fields of results.jsonl (line is null), at any time, from anywhere.",
    )
    results.add_argument("--journal", required=True, metavar="URL", help="postgresql://...")
    results.add_argument("--batch", required=True, metavar="NAME", help="the batch's name")

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
