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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import aiohttp

from .._client import AsyncClient
from .._http.download import download_video, video_paths
from .._models import Task
from ..errors import DownloadError

__all__ = ["StemTable", "VideoFiles", "VideoNaming", "video_stems"]

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


def _base_stem(key: str) -> str:
    """A key's stem before clashes are looked at: the key itself when it is a safe file name,
    else the key made safe with its hash added."""
    stem = _safe(key)
    if stem.split(".", 1)[0].casefold() in _RESERVED:  # with any extension
        stem = "_" + stem
    return stem if stem == key else _hashed(stem, key)


def video_stems(keys: Iterable[str]) -> dict[str, str]:
    """The file stem of each key's videos (see the module docstring); unique, even ignoring
    case, and the same for a key whatever the order of the keys."""
    stems = {key: _base_stem(key) for key in keys}
    while True:
        groups: dict[str, list[str]] = {}
        for key, stem in stems.items():
            groups.setdefault(stem.casefold(), []).append(key)
        clashes = [key for group in groups.values() if len(group) > 1 for key in group]
        if not clashes:
            return stems
        for key in clashes:
            stems[key] = _hashed(stems[key], key)


class StemTable:
    """The stems :func:`video_stems` gives, for keys read from a file once, without keeping
    every key: :meth:`add` each key (a first read of the file), then :meth:`finish` (given a
    way to read again the few keys whose stems clash), then :meth:`stem`.

    While keys are added it holds the case-folded stem of each (a set of strings), but for keys
    made of ASCII digits (lines keyed by their number), which never clash; after
    :meth:`finish` only the stems of the keys in a clash (usually none)."""

    def __init__(self) -> None:
        self._seen: set[str] | None = set()
        self._clashing: set[str] = set()
        self._settled: dict[str, str] = {}

    def add(self, key: str) -> None:
        """Count ``key`` (each key of the batch, once)."""
        if self._seen is None:
            raise RuntimeError("StemTable.add after finish")
        if key.isascii() and key.isdigit():
            # its own stem, which no other key's stem can be (only "N" folds to "N", and a
            # hashed stem has a "-"): a line keyed by its number costs nothing here
            return
        folded = _base_stem(key).casefold()
        if folded == key:
            folded = key  # one string for both (the caller holds the key anyway)
        if folded in self._seen:
            self._clashing.add(folded)
        else:
            self._seen.add(folded)

    def finish(self, find: Callable[[set[str]], Iterable[str]]) -> None:
        """Settle the clashes as :func:`video_stems` does. ``find(folded)`` gives every key
        whose case-folded first stem (``_base_stem``) is in ``folded``; it is called only when
        there are clashes, with their stems."""
        seen, self._seen = self._seen, None
        if seen is None or not self._clashing:
            return
        stems = {key: _base_stem(key) for key in find(self._clashing)}
        taken = {stem.casefold() for stem in stems.values()}  # first stems of the keys here
        while True:
            # a stem given in the last round may be another key's first stem: that key joins
            hits = {
                folded
                for folded in (stem.casefold() for stem in stems.values())
                if folded in seen and folded not in taken
            }
            if hits:
                for key in find(hits):
                    stems.setdefault(key, _base_stem(key))
                    taken.add(_base_stem(key).casefold())
            groups: dict[str, list[str]] = {}
            for key, stem in stems.items():
                groups.setdefault(stem.casefold(), []).append(key)
            clashes = [key for group in groups.values() if len(group) > 1 for key in group]
            if not clashes:
                break
            for key in clashes:
                stems[key] = _hashed(stems[key], key)
        self._settled = {key: stem for key, stem in stems.items() if stem != _base_stem(key)}

    def stem(self, key: str) -> str:
        """The stem of ``key``'s videos."""
        return self._settled.get(key) or _base_stem(key)


class VideoFiles:
    """The videos of one batch: their paths, and their download to those paths."""

    def __init__(
        self, folder: Path, naming: VideoNaming, keys: Iterable[str] | StemTable = ()
    ) -> None:
        self.folder = folder
        self.naming = naming
        if isinstance(keys, StemTable):
            self._stem: Callable[[str], str] = keys.stem
        else:
            stems = video_stems(keys) if naming == "key" else {}
            self._stem = stems.__getitem__

    def paths(self, key: str, task: Task) -> list[Path]:
        """Where the videos of ``task``, the task of job ``key``, are saved."""
        if self.naming == "task":
            return video_paths(task, self.folder)
        stem, count = self._stem(key), len(task.videos)
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
