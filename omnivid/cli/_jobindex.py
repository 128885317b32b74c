"""The batch file read twice, never held: :class:`JobIndex` (the first read) and
:class:`LineReader` (the second, one per provider, lazily, as ``client.map`` pulls jobs).

The first read (:meth:`JobIndex.scan`, before anything runs) checks every line as
:func:`~omnivid.cli._jobs.parse_jobs` does, reports each bad line, and keeps only what the run
needs: which providers are used, one byte per line saying what the line is (no row, a line that
cannot run, or a job of provider N), the lines that reuse an earlier line's key, and the video
file stems that clash (:class:`~omnivid.cli._videos.StemTable`). The keys themselves are held
only while reading, then dropped: a byte per line for lines keyed by their number, and for
explicit keys a dict of key to line and a set of their file stems (about 15 MB at 100,000
lines; see :class:`~omnivid.cli._jobs.KeyRegistry`).

The second read goes through the file again for one provider's lines, parsing each into its
:class:`~omnivid.cli._jobs.Job` when the batch pulls it, so a batch holds the jobs it is
running, not the file. If the file changed in between, a line that no longer reads as the job
it was is a line that cannot run (its row says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ._jobs import Job, LineError, LineParser, iter_lines, peek
from ._videos import StemTable, VideoNaming

__all__ = ["INVALID", "JobIndex", "LineReader"]

NO_ROW = 0
"""A blank line or a comment."""
INVALID = 1
"""A line that cannot run (its row is ``invalid``)."""
_FIRST_PROVIDER = 2


class JobIndex:
    """What the first read of a batch file found (see the module docstring)."""

    def __init__(self, path: Path, default_provider: str | None) -> None:
        self.path = path
        self.default_provider = default_provider
        self.tags = bytearray()  # per line (number - 1): NO_ROW, INVALID or a provider's tag
        self.reused: dict[int, int] = {}  # line -> the earlier line holding its key
        self.rows = 0  # lines with a row in results.jsonl (every line but blanks, comments)
        self.invalid = 0
        self.stems: StemTable | None = None
        self._tags: dict[str, int] = {}

    @classmethod
    def scan(
        cls,
        path: Path,
        *,
        default_provider: str | None = None,
        naming: VideoNaming = "key",
        on_error: Callable[[LineError], None] | None = None,
    ) -> JobIndex:
        """Read and check every line of ``path``; ``on_error`` is told each bad line."""
        index = cls(path, default_provider)
        parser = LineParser(default_provider)
        stems = StemTable() if naming == "key" else None
        tags = index.tags
        for number, raw in iter_lines(path):
            item = parser.parse(number, raw)
            if item is None:
                tags.append(NO_ROW)
                continue
            index.rows += 1
            if isinstance(item, LineError):
                tags.append(INVALID)
                index.invalid += 1
                if parser.reused is not None:
                    index.reused[number] = parser.reused
                if on_error is not None:
                    on_error(item)
                continue
            tags.append(index._tag(item.provider))
            if stems is not None:
                stems.add(item.key)
        parser.keys = None  # the keys: not needed any more
        if stems is not None:
            stems.finish(index._keys_folded_to)
            index.stems = stems
        return index

    @property
    def providers(self) -> list[str]:
        """The providers the jobs need, sorted."""
        return sorted(self._tags)

    @property
    def jobs(self) -> int:
        """Lines that are jobs (rows that can run)."""
        return self.rows - self.invalid

    def reader(self, provider: str | None) -> LineReader:
        """A second read of the file for ``provider``'s jobs (None: the lines that cannot
        run)."""
        tag = INVALID if provider is None else self._tags.get(provider, -1)
        return LineReader(self, tag, provider)

    def _tag(self, provider: str) -> int:
        tag = self._tags.get(provider)
        if tag is None:
            tag = self._tags[provider] = _FIRST_PROVIDER + len(self._tags)
            if tag > 255:
                raise ValueError("more than 253 providers in one batch file")
        return tag

    def _keys_folded_to(self, folded: set[str]) -> Iterator[str]:
        """The keys of the jobs whose first video stem, case-folded, is in ``folded`` (for the
        rare clashes of :class:`StemTable`)."""
        from ._videos import _base_stem

        for number, raw in iter_lines(self.path):
            if number <= len(self.tags) and self.tags[number - 1] >= _FIRST_PROVIDER:
                key, _ = peek(number, raw)
                if _base_stem(key).casefold() in folded:
                    yield key


class LineReader:
    """The second read of a batch file, for the lines of one tag: an iterator of
    :class:`Job` (and :class:`LineError` for a line that changed since the first read, or, for
    the tag :data:`INVALID`, each line that cannot run). :meth:`rest` goes on lightly through
    the lines not reached (for the rows of a batch that stopped before them)."""

    def __init__(self, index: JobIndex, tag: int, provider: str | None) -> None:
        self._index = index
        self._tag = tag
        self._provider = provider
        self._lines = iter_lines(index.path)
        self._parser = LineParser(index.default_provider, track_keys=False)

    def __iter__(self) -> LineReader:
        return self

    def __next__(self) -> Job | LineError:
        for number, raw in self._matching():
            item = self._parser.parse(number, raw, reused=self._index.reused.get(number))
            if isinstance(item, Job) and item.provider == self._provider:
                return item
            if isinstance(item, LineError) and self._provider is None:
                return item
            key, _ = peek(number, raw)
            return LineError(number, key, "the line changed while the batch ran; rerun it")
        raise StopIteration

    def rest(self) -> Iterator[tuple[int, str, str | None]]:
        """``(line, key, model)`` of each line of this tag not reached yet, read lightly."""
        for number, raw in self._matching():
            key, model = peek(number, raw)
            yield number, key, model

    def close(self) -> None:
        """Close the file."""
        self._lines.close()

    def _matching(self) -> Iterator[tuple[int, str]]:
        tags = self._index.tags
        for number, raw in self._lines:
            if number > len(tags):  # added after the first read: not part of this batch
                self._lines.close()
                return
            if tags[number - 1] == self._tag:
                yield number, raw
