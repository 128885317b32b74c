"""``omnivid status`` and ``omnivid download``: one existing task, by its id."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._models import Task, TaskStatus, converter
from ..errors import DownloadError
from ..providers import Provider, get_provider
from ._common import EXIT_FAILED, EXIT_OK, client_for, error, time_scale
from ._env import Endpoint, parse_base_urls, real_endpoints
from ._results import billing_unit, clean_amount, unit_suffix

__all__ = ["download", "status"]


def _endpoint_for(args: argparse.Namespace) -> Endpoint:
    provider: Provider = get_provider(args.provider)
    base_urls = parse_base_urls(args.base_url, [provider.name])
    # these commands have no --simulate: a simulator's task is reached with its key and URL
    hint = "for a task of `omnivid sim`: the key it printed, and --base-url with its URL"
    return real_endpoints([provider.name], base_urls, missing_key_hint=hint)[provider.name]


async def status(args: argparse.Namespace) -> int:
    """Run ``omnivid status``: print the task, as text or ``--json``."""
    endpoint = _endpoint_for(args)
    async with client_for(endpoint, time_scale(args)) as client:
        task = await client.get(args.task_id)
    if args.json:
        print(json.dumps(_task_json(task), ensure_ascii=False, indent=2))
    else:
        print(_task_text(task))
    return EXIT_OK


async def download(args: argparse.Namespace) -> int:
    """Run ``omnivid download``: save a completed task's videos, print their paths."""
    endpoint = _endpoint_for(args)
    async with client_for(endpoint, time_scale(args)) as client:
        task = await client.get(args.task_id)
        if task.status is not TaskStatus.COMPLETED:
            if task.is_terminal:
                why = task.failure_reason
                error(f"task {task.id} {task.status.value} ({why}): nothing to download")
            else:
                error(
                    f"task {task.id} is {task.status.value} ({task.progress}%): nothing to "
                    "download yet; try again when it has completed"
                )
            return EXIT_FAILED
        try:
            paths = await client.download(task, args.out, overwrite=args.overwrite)
        except DownloadError as exc:  # the library's advice, in the command line's words
            exc.message = exc.message.replace("overwrite=True", "--overwrite")
            raise
    for path in paths:
        print(path)
    return EXIT_OK


def _task_json(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(task)
    data.pop("raw", None)
    return data


def _task_text(task: Task) -> str:
    rows: list[tuple[str, str]] = [("task", task.id), ("provider", task.provider)]
    if task.model:  # APIMart's task status does not say
        rows.append(("model", task.model))
    rows.append(("status", f"{task.status.value} ({task.progress}%)"))
    if task.created_at:
        rows.append(("created", task.created_at.isoformat(timespec="seconds")))
    if task.completed_at:
        rows.append(("completed", task.completed_at.isoformat(timespec="seconds")))
    if task.estimated_seconds is not None and not task.is_terminal:
        rows.append(("estimate", f"{task.estimated_seconds:g} s"))
    if task.actual_seconds is not None:
        rows.append(("took", f"{task.actual_seconds:g} s"))
    if task.cost is not None or task.credits is not None:
        cost = f"{clean_amount(task.cost):.2f}" if task.cost is not None else "?"
        label = unit_suffix(billing_unit(task.provider)) or " credits"
        credits = f" ({clean_amount(task.credits):g}{label})" if task.credits is not None else ""
        rows.append(("cost", cost + credits))
    for video in task.videos:
        expires = (
            f" (expires {video.expires_at.isoformat(timespec='seconds')})"
            if video.expires_at
            else ""
        )
        rows.append(("video", video.url + expires))
    if task.error:
        rows.append(("error", task.failure_reason))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
