"""``omnivid generate``: submit one job, show its progress, save its video(s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from .._models import TaskStatus, VideoRequest
from ..errors import TaskTimeoutError
from ..providers import get_provider, provider_for_model
from ._common import EXIT_FAILED, EXIT_OK, client_for, time_scale
from ._env import Endpoint, parse_base_urls, real_endpoints, simulated_endpoints
from ._progress import ProgressMode, TaskDisplay
from ._results import billing_unit, clean_amount, unit_suffix

__all__ = ["generate"]


async def generate(args: argparse.Namespace) -> int:
    """Run ``omnivid generate``; returns the exit status."""
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
    scale = time_scale(args)
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
    async with client_for(endpoint, scale) as client:
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
                goes_on = (
                    "it stops with the simulator"
                    if args.simulate
                    else f"it goes on at the provider: `omnivid status {task.id}{hint}`"
                )
                raise TaskTimeoutError(
                    f"task {task.id} not finished after {args.timeout:g} s; {goes_on}",
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
            why = last.failure_reason
            print(f"omnivid: task {last.id} {last.status.value}: {why}", file=sys.stderr)
            return EXIT_FAILED
        paths = await client.download(last, out, overwrite=True)
    cost = ""
    if last.cost is not None:
        cost = f", cost {clean_amount(last.cost):.2f}"
    elif last.credits is not None:
        cost = f", {clean_amount(last.credits):g}{unit_suffix(billing_unit(last.provider))}"
    print(f"omnivid: task {last.id} completed{cost}", file=sys.stderr)
    for path in paths:
        print(path)
    return EXIT_OK


def _hint(name: str, endpoint: Endpoint, args: argparse.Namespace) -> str:
    extra = f" --base-url {name}={endpoint.base_url}" if endpoint.base_url else ""
    if args.time_scale is not None:
        extra += f" --time-scale {args.time_scale:g}"
    return f" --provider {name}{extra}"
