"""omnivid quick start: generate one short video and save it.

Against the built-in simulator (no key, no cost, about a second)::

    python examples/quickstart.py --simulate

Against the real provider (this is billed)::

    export APIMART_API_KEY=sk-...
    python examples/quickstart.py --prompt "a fox running through fresh snow"

``--model`` picks the model (and so the provider: ``Omni-Flash-Ext`` and
``gemini-omni-flash-preview`` are APIMart's, ``gemini-omni-flash-reference-to-video`` is
EvoLink's, which also needs ``--image``). With ``--simulate``, ``--time-scale`` (or the
``OMNIVID_TIME_SCALE`` variable) sets how many real seconds one simulated second takes: the
default 0.01 turns Omni-Flash-Ext's four minutes into about two and a half seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

import omnivid
from omnivid.errors import OmnividError, TaskFailedError
from omnivid.providers import provider_for_model


async def generate_and_save(
    client: omnivid.AsyncClient, request: omnivid.VideoRequest, out: Path, overwrite: bool
) -> list[Path]:
    """Submit ``request``, follow it to the end, and download the result into ``out``."""
    task = await client.submit(request)
    print(f"submitted {task.id} ({task.model} on {task.provider})")
    async for snapshot in client.watch(task):
        print(f"  {snapshot.status.value:<10} {snapshot.progress:>3}%")
        task = snapshot
    if task.status is not omnivid.TaskStatus.COMPLETED:
        raise TaskFailedError(task)
    cost = f"cost {task.cost}" if task.cost is not None else f"credits {task.credits}"
    print(f"done: {cost}, result URL valid until {task.videos[0].expires_at}")
    return await client.download(task, out, overwrite=overwrite)


async def main(args: argparse.Namespace) -> list[Path]:
    """Run one generation, on the simulator or on the real provider."""
    provider = provider_for_model(args.model).name
    request = omnivid.VideoRequest(
        model=args.model,
        prompt=args.prompt,
        images=args.image,
        duration=args.duration,
    )
    if not args.simulate:
        async with omnivid.AsyncClient(provider) as client:
            return await generate_and_save(client, request, args.out, args.overwrite)

    from omnivid.testing import Simulator

    async with Simulator(time_scale=args.time_scale) as sim:
        client = omnivid.AsyncClient(
            provider,
            api_key=sim.api_key,
            base_url=sim.base_url(provider),
            time_scale=args.time_scale,
        )
        async with client:
            return await generate_and_save(client, request, args.out, args.overwrite)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Generate one video with omnivid.")
    parser.add_argument("--simulate", action="store_true", help="use the built-in simulator")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("OMNIVID_TIME_SCALE", "0.01")),
        help="real seconds per simulated second (simulator only; default 0.01)",
    )
    parser.add_argument("--model", default="Omni-Flash-Ext")
    parser.add_argument("--prompt", default="a red fox trotting through fresh snow at dawn")
    parser.add_argument("--image", action="append", default=[], help="reference image (repeat)")
    parser.add_argument("--duration", type=int, default=None, help="seconds, if the model has it")
    parser.add_argument("--out", type=Path, default=Path("videos"), help="folder for the video")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        saved = anyio.run(main, arguments)
    except OmnividError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    for path in saved:
        print(f"saved {path}")
