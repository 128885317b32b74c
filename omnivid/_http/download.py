"""Saving result videos: streamed to a ``.part`` file, resumed with ``Range``, renamed when whole.

Downloads are idempotent. Beside each finished ``NAME.mp4`` a small sidecar
``.NAME.mp4.omnivid`` (JSON) records its size, modification time, SHA-256 and the server's
``ETag``. Downloading the same task into the same folder again returns the file without any
request when it still matches: same size and modification time, or, if only the time changed
(a copy), the same SHA-256. A file without a sidecar (say, saved by an older omnivid) is
checked against the server instead: a ``Range`` request for the bytes past its end must answer
that there are none, at exactly its size. A file that does not match is never replaced unless
``overwrite=True``.

Result URLs are public CDN links: the API key is never sent to them. They expire (APIMart gives
``expires_at``, EvoLink 24 hours after completion): an answer meaning the URL's lifetime is over
(410; a 403 unless ``expires_at`` is still well ahead and the answer does not say it expired)
raises :class:`~omnivid.errors.DownloadExpiredError`, carrying the task id, the URL and the
status; any other failure a :class:`~omnivid.errors.DownloadError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio.to_thread

from .._models import Task, Video
from ..errors import DownloadError, DownloadExpiredError

__all__ = ["download_task", "download_video", "sidecar_path", "video_paths"]

log = logging.getLogger("omnivid")
_CHUNK = 64 * 1024
_EXCERPT = 2048  # bytes of an error answer read to tell an expired URL
_SKEW = 300.0  # seconds of clock difference tolerated before a 403 is not taken as expiry


def video_paths(task: Task, dest: Path) -> list[Path]:
    """Where ``download_task`` saves each of ``task``'s videos inside ``dest``."""
    n = len(task.videos)
    return [dest / (f"{task.id}.mp4" if n == 1 else f"{task.id}_{i}.mp4") for i in range(n)]


def sidecar_path(path: Path) -> Path:
    """The sidecar recording what was downloaded to ``path`` (see the module docstring)."""
    return path.with_name(f".{path.name}.omnivid")


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
    if path.exists():
        if not overwrite:
            why = await _mismatch(session, video, path, timeout)
            if why is None:
                log.debug("%s is already downloaded", path)
                return path
            raise DownloadError(
                f"{path} exists and {why}; pass overwrite=True to replace it", **ctx
            )
        sidecar_path(path).unlink(missing_ok=True)
    part = path.with_name(path.name + ".part")
    seen = _Fetched()  # the ETag (and SHA-256 so far) of the file being fetched
    attempts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have and seen.etag is not None:
            headers["If-Range"] = seen.etag
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
            # the sidecar first: a crash before the rename leaves the .part, resumed next time
            digest = seen.sha256(part.stat().st_size)
            await anyio.to_thread.run_sync(_write_sidecar, part, path, seen.etag, digest)
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
    seen: _Fetched,
) -> bool:
    """One GET; appends to ``part``. True when the file is complete.

    The response's ``ETag`` is stored in ``seen`` before the body is read, so that a transfer
    cut short resumes with ``If-Range`` (a changed file then comes back whole, not spliced).
    """
    async with session.get(video.url, headers=headers, timeout=timeout) as resp:
        if resp.status == 416 and have:
            # "bytes */SIZE": complete only if we hold exactly SIZE bytes; else start over
            if _content_range_total(resp) == have:
                return True
            part.unlink(missing_ok=True)
            raise aiohttp.ClientPayloadError(f"{part} does not match the remote file")
        if resp.status not in (200, 206):
            excerpt = (await resp.content.read(_EXCERPT)).decode("utf-8", "replace")
            if _expired(resp.status, video, excerpt):
                raise DownloadExpiredError(
                    f"GET {video.url} answered HTTP {resp.status} (the URL has expired)",
                    url=video.url,
                    status=resp.status,
                    expires_at=video.expires_at,
                    **ctx,
                )
            raise DownloadError(f"GET {video.url} answered HTTP {resp.status}", **ctx)
        seen.etag = resp.headers.get("ETag") or None
        if resp.status == 200:
            have = 0  # the server ignored Range (or the file changed): start over
        elif _range_start(resp) != have:
            part.unlink(missing_ok=True)
            raise aiohttp.ClientPayloadError(f"the server resumed at the wrong offset for {part}")
        digest = seen.hashing(have)
        total = _total_length(resp)
        with part.open("ab" if resp.status == 206 else "wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                out.write(chunk)
                have += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                    seen.hashed = have
        if total is not None and have < total:
            raise aiohttp.ClientPayloadError(f"got {have} of {total} bytes")
        return True


class _Fetched:
    """What the responses of one download said so far: the file's ``ETag``, and the SHA-256
    of the bytes received since the first byte (so the sidecar need not read the file again)."""

    __slots__ = ("_digest", "etag", "hashed")

    def __init__(self) -> None:
        self.etag: str | None = None
        self._digest: Any = None
        self.hashed = 0  # bytes the digest has seen

    def hashing(self, start: int) -> Any:
        """The digest to update with the bytes from ``start`` on (None: not known from 0)."""
        if start == 0:
            self._digest, self.hashed = hashlib.sha256(), 0
        elif self._digest is not None and self.hashed != start:
            self._digest = None
        return self._digest

    def sha256(self, size: int) -> str | None:
        """The file's SHA-256 if every one of its ``size`` bytes went through the digest."""
        if self._digest is None or self.hashed != size:
            return None
        return str(self._digest.hexdigest())


def _expired(status: int, video: Video, excerpt: str) -> bool:
    """Whether an error answer from the file server means the URL's lifetime is over: 410
    Gone; a 403 unless the provider's ``expires_at`` is still ahead (by more than
    :data:`_SKEW`) and the answer does not say it expired (the simulator's ``url_expired``,
    object stores' "Request has expired"); any 4xx once ``expires_at`` has passed."""
    if status == 410:
        return True
    if not 400 <= status < 500:
        return False
    now = datetime.now(UTC)
    passed = video.expires_at is not None and video.expires_at <= now
    if status == 403:
        ahead = video.expires_at is not None and (video.expires_at - now).total_seconds() > _SKEW
        return passed or not ahead or "expire" in excerpt.lower()
    return passed


def _range_start(resp: aiohttp.ClientResponse) -> int | None:
    """The first byte of a 206 answer, from ``Content-Range: bytes START-END/SIZE``."""
    spec = resp.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
    return int(spec) if spec.strip().isdigit() else None


def _total_length(resp: aiohttp.ClientResponse) -> int | None:
    return _content_range_total(resp) if resp.status == 206 else resp.content_length


# -- idempotence: is the file at ``path`` this video, completely? ------------------------------
async def _mismatch(
    session: aiohttp.ClientSession,
    video: Video,
    path: Path,
    timeout: aiohttp.ClientTimeout | None,
) -> str | None:
    """None if ``path`` holds ``video`` whole (by its sidecar, else by asking the server);
    otherwise why it is not known to."""
    known = await anyio.to_thread.run_sync(_sidecar_mismatch, path)
    if known != "":
        return known
    size = path.stat().st_size
    try:
        async with session.get(
            video.url, headers={"Range": f"bytes={size}-"}, timeout=timeout
        ) as resp:
            # 416: nothing past our last byte (the size is in Content-Range); 206: the remote
            # file goes on past it; 200: the server ignored Range and sends its full length
            if resp.status in (206, 416):
                total = _content_range_total(resp)
            elif resp.status == 200:
                total = resp.content_length
            else:
                return f"cannot be checked against the server (HTTP {resp.status})"
            etag = resp.headers.get("ETag")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"cannot be checked against the server ({type(exc).__name__})"
    if total != size:
        return f"has {size} bytes where the video has {total if total is not None else '?'}"
    await anyio.to_thread.run_sync(_write_sidecar, path, path, etag)
    return None


def _content_range_total(resp: aiohttp.ClientResponse) -> int | None:
    """SIZE from ``Content-Range: bytes .../SIZE``."""
    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _sidecar_mismatch(path: Path) -> str | None:
    """None if ``path`` still is what its sidecar records, why not otherwise, "" without a
    readable sidecar."""
    try:
        record = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        size, mtime_ns, sha256 = record["size"], record["mtime_ns"], record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    stat = path.stat()
    if stat.st_size != size:
        return f"has {stat.st_size} bytes where the video downloaded there had {size}"
    if stat.st_mtime_ns == mtime_ns or _sha256(path) == sha256:
        return None
    return "is not the video downloaded there (its SHA-256 differs)"


def _write_sidecar(source: Path, path: Path, etag: str | None, sha256: str | None = None) -> None:
    """Record ``source`` (the finished ``.part``, or ``path`` itself) as ``path``'s content
    (``sha256``: its digest, when already known)."""
    stat = source.stat()
    record: dict[str, Any] = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,  # a rename keeps it
        "sha256": sha256 or _sha256(source),
        "etag": etag,
    }
    sidecar = sidecar_path(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, sidecar)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
