"""Saving one job's videos before their URLs expire, and what ``omnivid batch`` does when one
has: :func:`save_fresh` and the figures the download queue orders and paces by.

After an expired URL (:class:`~omnivid.errors.DownloadExpiredError`: the file server answered
410, or 403 with the lifetime over) the task is read again (one ``GET``): if the provider then
gives a fresh URL (another URL, or a later ``expires_at``) the videos are fetched from it, once.
Otherwise the job ends ``expired``, with its task id, and the journal keeps a note beginning
with :data:`EXPIRED_NOTE`, so a rerun reports it without trying again.

Neither provider documents a fresh URL on a new read: APIMart's task carries a fixed
``expires_at``, and EvoLink says its result URLs live 24 hours from completion. The simulator
gives the same URL and ``expires_at`` on every read. So today the read finds nothing new; it
costs one request per expired job and is there for a provider that signs its URLs again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import aiohttp

from .._client import AsyncClient
from .._models import Task
from ..errors import DownloadExpiredError, OmnividError
from ._videos import VideoFiles

__all__ = ["ASSUMED_LIFETIME", "EXPIRED_NOTE", "expiry", "fresher", "lifetime", "save_fresh"]

log = logging.getLogger("omnivid")

EXPIRED_NOTE = "result URL expired before it was saved"
"""How the journal's note on a job whose URL expired begins (see the module docstring)."""


ASSUMED_LIFETIME = timedelta(hours=24)
"""A result URL's lifetime when the provider gives no ``expires_at``: EvoLink's documented 24
hours (APIMart's ``expires_at`` is about a day after completion too)."""


def expiry(task: Task) -> float | None:
    """When the first of ``task``'s URLs expires, in the provider's unix seconds: the order of
    the download queue. Without ``expires_at``, completion + :data:`ASSUMED_LIFETIME` (None
    when the completion time is unknown too)."""
    ends = [video.expires_at for video in task.videos if video.expires_at is not None]
    if ends:
        return min(ends).timestamp()
    if task.completed_at is not None:
        return (task.completed_at + ASSUMED_LIFETIME).timestamp()
    return None


def lifetime(task: Task, time_scale: float) -> float | None:
    """How long ``task``'s URLs live from its completion, in real seconds (provider seconds x
    ``time_scale``); None when either time is unknown."""
    ends = [video.expires_at for video in task.videos if video.expires_at is not None]
    if not ends or task.completed_at is None:
        return None
    return (min(ends) - task.completed_at).total_seconds() * time_scale


def fresher(old: Task, new: Task) -> bool:
    """True when ``new`` (the task read again) gives URLs ``old`` did not: other URLs, or the
    same ones living longer."""
    if not new.videos:
        return False
    if new.video_urls != old.video_urls:
        return True
    before, after = expiry(old), expiry(new)
    return before is not None and after is not None and after > before


async def save_fresh(videos: VideoFiles, client: AsyncClient, key: str, task: Task) -> list[Path]:
    """Save ``task``'s videos for job ``key``; after an expired URL, read the task again and
    save from its fresh URLs if it has any. Raises the :class:`DownloadExpiredError` when not."""
    try:
        return await videos.save(client, key, task)
    except DownloadExpiredError as expired:
        try:
            again = await client.get(task.id)
        except (OmnividError, aiohttp.ClientError) as exc:
            log.debug("task %s could not be read again after its URL expired: %s", task.id, exc)
            raise expired from None
        if not fresher(task, again):
            raise expired from None
        log.debug("task %s gave a fresh URL after the last one expired", task.id)
        return await videos.save(client, key, again)
