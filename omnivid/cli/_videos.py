"""Where ``omnivid batch`` saves each job's videos: in ``DIR/videos/``, named after the job's key
(the default, ``--video-names key``) or after the task id (``--video-names task``).

A key names its file as it is when it is a safe file name: letters, digits, ``-``, ``_`` and
``.``, not starting with ``.``, at most 100 bytes, not a name Windows reserves (``CON``, ``NUL``,
``COM1``..., with any extension). Any other key is made safe (each other character, path
separators and control characters included, becomes ``_``; a leading ``.`` too; a reserved name
gets a leading ``_``; it is cut to 100 bytes) and followed by ``-`` and 10 hex digits of the
SHA-256 of the key, so two keys never share a file. Keys that
would share a name on a case-insensitive file system (``Cat`` and ``cat``) get the hash as well.
A task with one video saves ``STEM.mp4``; one with several ``STEM+0.mp4``, ``STEM+1.mp4``...
(``+`` never appears in a stem, so these never meet another key's file).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import aiohttp

from .._client import AsyncClient
from .._http.download import download_video, video_paths
from .._models import Task
from ..errors import DownloadError

__all__ = ["VideoFiles", "VideoNaming", "video_stems"]

VideoNaming = Literal["key", "task"]

_MAX_STEM_BYTES = 100
_HASH_CHARS = 10
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)


def _safe(key: str) -> str:
    """``key`` with every character a file name cannot safely hold replaced, cut to size."""
    text = unicodedata.normalize("NFC", key)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    encoded = stem.encode()
    if len(encoded) > _MAX_STEM_BYTES:
        stem = encoded[:_MAX_STEM_BYTES].decode(errors="ignore")
    return stem


def _hashed(stem: str, key: str) -> str:
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]}"


def video_stems(keys: Iterable[str]) -> dict[str, str]:
    """The file stem of each key's videos (see the module docstring); unique, even ignoring
    case, and the same for a key whatever the order of the keys."""
    stems: dict[str, str] = {}
    for key in keys:
        stem = _safe(key)
        if stem.split(".", 1)[0].casefold() in _RESERVED:  # with any extension
            stem = "_" + stem
        stems[key] = stem if stem == key else _hashed(stem, key)
    while True:
        groups: dict[str, list[str]] = {}
        for key, stem in stems.items():
            groups.setdefault(stem.casefold(), []).append(key)
        clashes = [key for group in groups.values() if len(group) > 1 for key in group]
        if not clashes:
            return stems
        for key in clashes:
            stems[key] = _hashed(stems[key], key)


class VideoFiles:
    """The videos of one batch: their paths, and their download to those paths."""

    def __init__(self, folder: Path, naming: VideoNaming, keys: Iterable[str]) -> None:
        self.folder = folder
        self.naming = naming
        self._stems = video_stems(keys) if naming == "key" else {}

    def paths(self, key: str, task: Task) -> list[Path]:
        """Where the videos of ``task``, the task of job ``key``, are saved."""
        if self.naming == "task":
            return video_paths(task, self.folder)
        stem, count = self._stems[key], len(task.videos)
        if count == 1:
            return [self.folder / f"{stem}.mp4"]
        return [self.folder / f"{stem}+{i}.mp4" for i in range(count)]

    async def save(self, client: AsyncClient, key: str, task: Task) -> list[Path]:
        """Download the videos of ``task`` to their paths (a ``.part`` left by an interrupted
        run resumes); returns the paths."""
        if self.naming == "task":
            return await client.download(task, self.folder, overwrite=True)
        if not task.videos:
            raise DownloadError(
                f"task has no videos to download (status {task.status.value})",
                provider=task.provider,
                model=task.model,
                task_id=task.id,
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = self.paths(key, task)
        timeout = aiohttp.ClientTimeout(  # as client.download: no limit on the whole transfer
            total=None, sock_connect=client.timeouts.connect, sock_read=client.timeouts.read
        )
        for video, path in zip(task.videos, paths, strict=True):
            await download_video(
                client.session, video, path, overwrite=True, timeout=timeout, task=task
            )
        return paths
