"""``python -m benchmarks [NAME ...] [--quick] [--json PATH] [--markdown PATH]`` (names below)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ._harness import RESULTS_DIR, BenchResult, load_average, machine_info, write_json

BENCHMARKS = {
    "b1": "b1_throughput",
    "b2": "b2_polling",
    "b3": "b3_rate_limit",
    "b4": "b4_scale",
    "b4-cli": "b4_cli",
    "b5": "b5_journal",
    "b5pg": "b5_postgres",
    "b6": "b6_recovery",
    "b7": "b7_expiry",
    "b8": "b8_scale_out",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run omnivid's benchmarks against a simulator in its own process.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"{', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--json", type=Path, help="JSON output (default results/latest.json)")
    parser.add_argument("--markdown", type=Path, help="markdown output (default results/latest.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; print their tables; write JSON and markdown."""
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    stem = "quick" if args.quick else "latest"
    json_path = args.json or RESULTS_DIR / f"{stem}.json"
    md_path = args.markdown or RESULTS_DIR / f"{stem}.md"
    machine = machine_info()
    print(
        f"# omnivid benchmarks{' (quick)' if args.quick else ''}\n\n"
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}, "
        f"Python {machine['python']}, aiohttp {machine['aiohttp']}, {machine['os']}, "
        f"{machine['date']}\n",
        flush=True,
    )
    results: list[BenchResult] = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"benchmarks.{BENCHMARKS[name]}")
        load = load_average()
        result: BenchResult = module.run(quick=args.quick)
        result.load_before = load
        results.append(result)
        print(result.markdown() + "\n", flush=True)
        write_json(json_path, results, quick=args.quick)
    total = time.perf_counter() - started
    command = "python -m benchmarks" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(
        f"Measured with `{command}` in {total:.0f} s on {machine['cpu']}, {machine['cores']} "
        f"cores, {machine['memory']}, Python {machine['python']}, aiohttp {machine['aiohttp']}, "
        f"{machine['os']} ({machine['date']}, commit {machine['commit']}).\n\n"
        + "\n\n".join(r.markdown() for r in results)
        + "\n"
    )
    print(f"total {total:.0f} s; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
