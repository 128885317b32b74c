"""Generate a folder of videos from a list of prompts with ``client.map``.

::

    python examples/bulk_script.py prompts.txt --out videos/                 # APIMART_API_KEY
    python examples/bulk_script.py prompts.txt --out videos/ --provider evolink \\
        --image https://example.com/reference.png                           # EVOLINK_API_KEY
    python examples/bulk_script.py --simulate --out /tmp/videos              # offline

The prompts file has one prompt per line (blank lines and ``#`` comments are skipped); without
one, a few built-in prompts are used. ``--simulate`` starts omnivid's simulator in-process (1000
times faster than real time) instead of calling the paid API. At most ``--max-in-flight`` tasks
run at once; ``--max-cost`` stops submitting once the budget (provider billing unit) is used.

Videos are saved as ``OUT/<task id>.mp4`` while the batch runs, and ``OUT/results.jsonl`` has
one line per prompt: its key, task id, status, files or error. The batch's journal
(``OUT/journal.sqlite``) makes a rerun resume: finished prompts are skipped, running tasks are
polled again, nothing already submitted is paid for twice. Exit status 0 when every video was
made and saved.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from omnivid import AsyncClient, Outcome, VideoRequest
from omnivid.errors import OmnividError

DEFAULT_MODELS = {"apimart": "Omni-Flash-Ext", "evolink": "gemini-omni-flash-reference-to-video"}
BUILT_IN_PROMPTS = (
    "A red fox trots through fresh powder snow at dawn, low tracking shot",
    "Macro slow-motion shot of espresso pouring into a white cup, warm morning light",
    "Time-lapse of a city skyline going from sunset to night, lights switching on",
    "A paper boat drifts down a rain-filled gutter, camera following at water level",
)
SIM_TIME_SCALE = 0.001
SIM_IMAGE = "https://images.example.com/reference.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Generate a folder of videos from prompts.")
    parser.add_argument("prompts", nargs="?", type=Path, help="text file, one prompt per line")
    parser.add_argument("--out", type=Path, required=True, help="folder for the videos")
    parser.add_argument("--provider", choices=sorted(DEFAULT_MODELS), default="apimart")
    parser.add_argument("--model", help="model (default: the provider's)")
    parser.add_argument("--duration", type=int, help="seconds per video (model's default)")
    parser.add_argument("--aspect-ratio", help="16:9 or 9:16")
    parser.add_argument("--image", action="append", default=[], help="reference image URL")
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--max-cost", type=float, help="budget in the provider's billing unit")
    parser.add_argument("--simulate", action="store_true", help="use the local simulator")
    return parser.parse_args(argv)


def read_prompts(path: Path | None) -> list[str]:
    """The prompts in ``path`` (or the built-in ones)."""
    if path is None:
        return list(BUILT_IN_PROMPTS)
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_requests(args: argparse.Namespace, prompts: list[str]) -> list[tuple[str, VideoRequest]]:
    """One ``(key, request)`` per prompt; keys are the prompt's number (001, 002, ...)."""
    images = tuple(args.image)
    if args.simulate and args.provider == "evolink" and not images:
        images = (SIM_IMAGE,)
    model = args.model or DEFAULT_MODELS[args.provider]
    return [
        (
            f"{i:03d}",
            VideoRequest(
                model=model,
                prompt=prompt,
                images=images,
                duration=args.duration,
                aspect_ratio=args.aspect_ratio,
            ),
        )
        for i, prompt in enumerate(prompts, start=1)
    ]


@asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    """A client on the real provider, or on an in-process simulator with ``--simulate``."""
    async with AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if args.simulate:
            from omnivid.testing import Simulator

            sim = await stack.enter_async_context(Simulator(time_scale=SIM_TIME_SCALE))
            options = {
                "base_url": sim.base_url(args.provider),
                "api_key": sim.api_key,
                "time_scale": SIM_TIME_SCALE,
            }
        yield await stack.enter_async_context(AsyncClient(args.provider, **options))


def record(outcome: Outcome, request: VideoRequest, files: list[str], error: str | None) -> str:
    """One line of ``results.jsonl``."""
    task = outcome.task
    return json.dumps(
        {
            "key": outcome.key,
            "prompt": request.prompt,
            "task_id": outcome.task_id,
            "status": task.status.value if task else None,
            "files": files,
            "error": error,
            "cost": outcome.cost,
        },
        ensure_ascii=False,
    )


async def run(args: argparse.Namespace) -> int:
    """Generate and save every video; returns the exit status."""
    jobs = build_requests(args, read_prompts(args.prompts))
    args.out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(4)

    async def save(client: AsyncClient, outcome: Outcome, request: VideoRequest) -> None:
        """Download a completed task's videos (kept if already there from an earlier run)."""
        task, key = outcome.task, str(outcome.key)
        assert task is not None
        saved = args.out / f"{task.id}.mp4"
        try:
            async with limiter:
                paths = [saved] if saved.exists() else await client.download(task, args.out)
        except OmnividError as exc:
            lines[key] = record(outcome, request, [], f"download failed: {exc}")
            print(f"{key}  download failed: {exc}")
            return
        lines[key] = record(outcome, request, [str(p) for p in paths], None)
        print(f"{key}  saved {', '.join(p.name for p in paths)}")

    requests = dict(jobs)
    async with (
        open_client(args) as client,
        anyio.create_task_group() as downloads,
        client.map(
            jobs,
            max_in_flight=args.max_in_flight,
            max_cost=args.max_cost,
            journal=args.out / "journal.sqlite",
        ) as outcomes,
    ):
        async for outcome in outcomes:
            request = requests[str(outcome.key)]
            if outcome.ok:
                downloads.start_soon(save, client, outcome, request)
            else:
                lines[str(outcome.key)] = record(outcome, request, [], str(outcome.error))
                print(f"{outcome.key}  failed: {outcome.error}")
    results = args.out / "results.jsonl"
    results.write_text("".join(lines[k] + "\n" for k in sorted(lines)), encoding="utf-8")
    saved = sum(json.loads(line)["files"] != [] for line in lines.values())
    print(f"{saved}/{len(jobs)} videos in {args.out} (details: {results})")
    return 0 if saved == len(jobs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python examples/bulk_script.py [PROMPTS] --out DIR [...]``."""
    return anyio.run(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
