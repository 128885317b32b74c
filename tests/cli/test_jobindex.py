"""The batch file read twice, never held: the first read (``JobIndex.scan``) checks every line
and keeps a byte per line; the second (``LineReader``) parses one provider's lines lazily."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clitools import write_jobs

from omnivid.cli._jobindex import INVALID, JobIndex
from omnivid.cli._jobs import Job, LineError, parse_jobs

EXT = {"model": "Omni-Flash-Ext", "prompt": "a fox", "duration": 4}
R2V = {"model": "gemini-omni-flash-reference-to-video", "prompt": "walk",
       "images": ["https://example.com/a.png"]}  # fmt: skip


def mixed(tmp_path: Path) -> Path:
    """Two providers, bad lines, a reused key, a comment and a blank line."""
    lines: list[dict[str, Any] | str] = [
        {**EXT, "key": "a"},
        {**R2V, "key": "b"},
        "# a comment",
        "",
        {**EXT, "key": "a"},  # reuses line 1's key
        '{"model": "Omni-Flash-Ext", "prompt": ',
        {**EXT, "duration": 7},
        {**R2V},
        {**EXT},
    ]
    return write_jobs(tmp_path / "jobs.jsonl", lines)


def test_scan_agrees_with_parse_jobs(tmp_path: Path) -> None:
    """The first read finds the jobs and errors parse_jobs finds, keeping only counters, the
    providers, a byte per line and the reused keys' lines."""
    path = mixed(tmp_path)
    errors: list[LineError] = []
    index = JobIndex.scan(path, on_error=errors.append)
    parsed = parse_jobs(path.read_text().splitlines())
    assert errors == list(parsed.errors)
    assert index.providers == ["apimart", "evolink"]
    assert (index.rows, index.invalid, index.jobs) == (7, 3, 4)
    assert index.reused == {5: 1}
    assert index.tags[2:4] == bytes([0, 0]) and index.tags[4] == INVALID


def test_readers_give_each_providers_jobs_in_file_order(tmp_path: Path) -> None:
    """A reader per provider yields its jobs as parse_jobs does; the INVALID reader the bad
    lines with the same messages (a reused key included)."""
    path = mixed(tmp_path)
    index = JobIndex.scan(path)
    parsed = parse_jobs(path.read_text().splitlines())
    for provider in index.providers:
        got = list(index.reader(provider))
        assert got == [job for job in parsed.jobs if job.provider == provider]
    assert list(index.reader(None)) == list(parsed.errors)


def test_rest_reads_the_lines_not_reached_lightly(tmp_path: Path) -> None:
    """After a stop, ``rest`` gives the key and model of each line of the reader's provider
    that it did not reach."""
    path = mixed(tmp_path)
    index = JobIndex.scan(path)
    reader = index.reader("apimart")
    first = next(reader)
    assert isinstance(first, Job) and first.key == "a"
    assert list(reader.rest()) == [(9, "9", "Omni-Flash-Ext")]
    reader.close()


def test_a_line_changed_between_the_reads_cannot_run(tmp_path: Path) -> None:
    """A line that no longer reads as its provider's job gets a row saying it changed; lines
    added after the first read are not part of the batch."""
    path = write_jobs(tmp_path / "jobs.jsonl", [{**EXT, "key": "a"}, {**EXT, "key": "b"}])
    index = JobIndex.scan(path)
    changed = [json.dumps({**R2V, "key": "b"}), json.dumps({**EXT, "key": "c"})]
    path.write_text(json.dumps({**EXT, "key": "a"}) + "\n" + "\n".join(changed) + "\n")
    got = list(index.reader("apimart"))
    assert isinstance(got[0], Job) and got[0].key == "a"
    assert got[1] == LineError(2, "b", "the line changed while the batch ran; rerun it")
    assert len(got) == 2


def test_stems_are_settled_by_the_scan(tmp_path: Path) -> None:
    """Keys differing only by case get hashed stems from the first read."""
    path = write_jobs(
        tmp_path / "jobs.jsonl", [{**EXT, "key": "Cat"}, {**EXT, "key": "cat"}, {**EXT}]
    )
    index = JobIndex.scan(path)
    assert index.stems is not None
    assert index.stems.stem("3") == "3"
    assert index.stems.stem("Cat").startswith("Cat-") and index.stems.stem("cat").startswith("cat-")
    assert JobIndex.scan(path, naming="task").stems is None
