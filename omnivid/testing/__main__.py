"""``python -m omnivid.testing`` (and ``omnivid sim``): run the simulator in its own process.

Prints one ``PROVIDER BASE_URL`` line per provider, then ``api key: KEY``, and serves until
SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from contextlib import suppress

from ._config import LANGUAGES, PROVIDERS, FaultConfig, SimConfig
from ._simulator import Simulator


def _budget(text: str) -> tuple[str, float]:
    key, sep, amount = text.rpartition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=AMOUNT")
    return key, float(amount)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnivid sim",
        description="Run the APIMart/EvoLink simulator on a loopback port until Ctrl-C.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    add("--time-scale", type=float, default=1.0, help="real seconds per simulated second")
    add("--seed", type=int, default=None, help="random seed")
    add("--api-key", action="append", dest="api_keys", help="accepted key (repeatable)")
    add("--rps", type=float, default=None, help="requests per second per key")
    add("--burst", type=float, default=None, help="token-bucket size for --rps")
    add("--max-concurrent", type=int, default=None, help="in-flight tasks per key")
    add(
        "--retry-after",
        choices=("seconds", "http-date", "none"),
        default="seconds",
        help="Retry-After form on 429 (default seconds)",
    )
    add("--retry-after-seconds", type=float, default=1.0, help="Retry-After value (real s)")
    add("--budget", type=_budget, action="append", default=[], help="KEY=AMOUNT balance")
    add("--instant", action="store_true", help="tasks complete immediately")
    add("--estimate-error", type=float, default=None, help="estimated_time error, e.g. 0.3")
    add("--url-ttl", type=float, default=86400.0, help="result URL lifetime (simulated s)")
    add("--url-form", choices=("list", "string"), default="list", help="APIMart url form")
    add("--language", choices=LANGUAGES, default="zh", help="APIMart messages")
    add("--allow-loopback-callbacks", action="store_true", help="accept http://127.0.0.1")
    add("--failure-rate", type=float, default=0.0, help="task failure probability (all causes)")
    add("--cancel-rate", type=float, default=0.0, help="task cancellation probability")
    add("--error-5xx-rate", type=float, default=0.0, help="5xx response probability")
    add("--rate-limit-rate", type=float, default=0.0, help="spurious 429 probability")
    add("--lost-response-rate", type=float, default=0.0, help="submit lost-response probability")
    add("--reset-rate", type=float, default=0.0, help="connection reset probability")
    add("--slow-rate", type=float, default=0.0, help="slow response probability")
    add("--slow-seconds", type=float, default=1.0, help="delay of a slow response (real s)")
    add("--malformed-rate", type=float, default=0.0, help="malformed JSON probability")
    add("--truncate-download-rate", type=float, default=0.0, help="truncated download chance")
    return parser


def _configs(args: argparse.Namespace) -> tuple[SimConfig, FaultConfig]:
    config = SimConfig(
        host=args.host,
        port=args.port,
        api_keys=args.api_keys,
        seed=args.seed,
        time_scale=args.time_scale,
        instant=args.instant,
        estimate_error=args.estimate_error,
        url_ttl=args.url_ttl,
        url_form=args.url_form,
        language=args.language,
        budgets=dict(args.budget),
        rps=args.rps,
        burst=args.burst,
        max_concurrent_tasks=args.max_concurrent,
        retry_after=None if args.retry_after == "none" else args.retry_after,
        retry_after_seconds=args.retry_after_seconds,
        allow_loopback_callbacks=args.allow_loopback_callbacks,
    )
    if not 0 <= args.failure_rate <= 1:
        raise ValueError("--failure-rate must be between 0 and 1")
    share = args.failure_rate / 3
    faults = FaultConfig(
        error_5xx_rate=args.error_5xx_rate,
        rate_limit_rate=args.rate_limit_rate,
        lost_response_rate=args.lost_response_rate,
        reset_rate=args.reset_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        malformed_rate=args.malformed_rate,
        truncate_download_rate=args.truncate_download_rate,
        fail_quota_rate=share,
        fail_moderation_rate=share,
        fail_timeout_rate=share,
        cancel_rate=args.cancel_rate,
    )
    return config, faults


async def _serve(config: SimConfig, faults: FaultConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with Simulator(config, faults=faults) as sim:
            for provider in PROVIDERS:
                print(f"{provider} {sim.base_url(provider)}")
            print(f"api key: {sim.api_key}", flush=True)
            print("omnivid simulator running; press Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config, faults = _configs(args)
    except (ValueError, TypeError) as exc:
        print(f"omnivid sim: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, faults))
    except KeyboardInterrupt:  # platforms without loop signal handlers: a clean stop too
        return 0
    except OSError as exc:
        print(f"omnivid sim: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
