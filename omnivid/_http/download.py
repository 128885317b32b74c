"""Saving result videos: streamed to a ``.part`` file, resumed with ``Range``, renamed when whole.

Result URLs are public CDN links: the API key is never sent to them.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from .._models import Task, Video
from ..errors import DownloadError

__all__ = ["download_task", "download_video", "video_paths"]

log = logging.getLogger("omnivid")
_CHUNK = 64 * 1024


def video_paths(task: Task, dest: Path) -> list[Path]:
    """Where ``download_task`` saves each of ``task``'s videos inside ``dest``."""
    n = len(task.videos)
    return [dest / (f"{task.id}.mp4" if n == 1 else f"{task.id}_{i}.mp4") for i in range(n)]


async def download_task(
    session: aiohttp.ClientSession,
    task: Task,
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    max_resumes: int = 5,
    timeout: aiohttp.ClientTimeout | None = None,
) -> list[Path]:
    """Download every video of a completed ``task`` into the directory ``dest``."""
    if not task.videos:
        raise DownloadError(
            f"task has no videos to download (status {task.status.value})",
            provider=task.provider,
            model=task.model,
            task_id=task.id,
        )
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    paths = video_paths(task, folder)
    for video, path in zip(task.videos, paths, strict=True):
        await download_video(
            session,
            video,
            path,
            overwrite=overwrite,
            max_resumes=max_resumes,
            timeout=timeout,
            task=task,
        )
    return paths


async def download_video(
    session: aiohttp.ClientSession,
    video: Video,
    path: Path,
    *,
    overwrite: bool = False,
    max_resumes: int = 5,
    timeout: aiohttp.ClientTimeout | None = None,
    task: Task | None = None,
) -> Path:
    """Stream ``video`` to ``path``; an interrupted transfer resumes from where it stopped."""
    ctx = {
        "provider": task.provider if task else None,
        "model": task.model if task else None,
        "task_id": task.id if task else None,
    }
    if path.exists() and not overwrite:
        raise DownloadError(f"{path} exists; pass overwrite=True to replace it", **ctx)
    part = path.with_name(path.name + ".part")
    seen: dict[str, str] = {}  # the ETag of the file being fetched, once a response gave it
    attempts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have and "etag" in seen:
            headers["If-Range"] = seen["etag"]
        try:
            done = await _fetch(session, video, part, have, headers, timeout, ctx, seen)
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise DownloadError(f"cannot download {video.url!r}: {exc}", **ctx) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
            attempts += 1
            if attempts > max_resumes:
                raise DownloadError(
                    f"download of {video.url} kept failing ({type(exc).__name__}); "
                    f"{part} holds what arrived and a rerun resumes it",
                    **ctx,
                ) from None
            log.debug("download interrupted (%s); resuming", type(exc).__name__)
            continue
        if done:
            os.replace(part, path)
            return path


async def _fetch(
    session: aiohttp.ClientSession,
    video: Video,
    part: Path,
    have: int,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout | None,
    ctx: dict[str, str | None],
    seen: dict[str, str],
) -> bool:
    """One GET; appends to ``part``. True when the file is complete.

    The response's ``ETag`` is stored in ``seen`` before the body is read, so that a transfer
    cut short resumes with ``If-Range`` (a changed file then comes back whole, not spliced).
    """
    async with session.get(video.url, headers=headers, timeout=timeout) as resp:
        if resp.status == 416 and have:
            # "bytes */SIZE": complete only if we hold exactly SIZE bytes; else start over
            size = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if size.isdigit() and int(size) == have:
                return True
            part.unlink(missing_ok=True)
            raise aiohttp.ClientPayloadError(f"{part} does not match the remote file")
        if resp.status not in (200, 206):
            expired = video.expires_at is not None and video.expires_at < datetime.now(UTC)
            why = " (the URL has expired)" if expired or resp.status in (403, 410) else ""
            raise DownloadError(f"GET {video.url} answered HTTP {resp.status}{why}", **ctx)
        etag = resp.headers.get("ETag")
        if etag:
            seen["etag"] = etag
        else:
            seen.pop("etag", None)
        if resp.status == 200:
            have = 0  # the server ignored Range (or the file changed): start over
        elif _range_start(resp) != have:
            part.unlink(missing_ok=True)
            raise aiohttp.ClientPayloadError(f"the server resumed at the wrong offset for {part}")
        total = _total_length(resp, have)
        with part.open("ab" if resp.status == 206 else "wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                out.write(chunk)
                have += len(chunk)
        if total is not None and have < total:
            raise aiohttp.ClientPayloadError(f"got {have} of {total} bytes")
        return True


def _range_start(resp: aiohttp.ClientResponse) -> int | None:
    """The first byte of a 206 answer, from ``Content-Range: bytes START-END/SIZE``."""
    spec = resp.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
    return int(spec) if spec.strip().isdigit() else None


def _total_length(resp: aiohttp.ClientResponse, have: int) -> int | None:
    if resp.status == 206:
        content_range = resp.headers.get("Content-Range", "")
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    return resp.content_length
