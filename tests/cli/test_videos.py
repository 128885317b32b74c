"""``omnivid batch`` names videos after job keys: safe for any key, unique, stable."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from clitools import read_results, run_cli, write_jobs

from omnivid import Task, TaskStatus, Video
from omnivid.cli._videos import StemTable, VideoFiles, _base_stem, _hashed, video_stems

HOSTILE = [
    "a/b",
    "a\\b",
    "a_b",
    "../../etc/passwd",
    "..",
    ".",
    ".hidden",
    "nul\x00byte",
    "tab\tand\nnewline",
    "\x1b[31mred",
    "\u202egnp.exe",
    "CON",
    "con.txt",
    "Lpt1",
    "C:evil",
    "x" * 300,
    "é" * 200,
    "Cat",
    "cat",
    "a+b",
    "spaces are here",
    "-rf",
]


def test_hostile_keys_become_safe_unique_names(tmp_path: Path) -> None:
    """No separator, control character, leading dot or reserved name; short; unique ignoring
    case; every file lands inside the videos folder."""
    stems = video_stems(HOSTILE)
    assert len({stem.casefold() for stem in stems.values()}) == len(HOSTILE)
    for key, stem in stems.items():
        assert stem and not stem.startswith("."), key
        assert all(c.isalnum() or c in "-_." for c in stem), (key, stem)
        assert not any(unicodedata.category(c).startswith("C") for c in stem), key
        assert stem.split(".")[0].casefold() not in ("con", "nul", "lpt1"), key
        assert len(stem.encode()) <= 111, key  # 100 bytes and "-" + 10 hex digits
        assert (tmp_path / f"{stem}.mp4").resolve().parent == tmp_path.resolve()


def test_safe_keys_are_names_as_they_are() -> None:
    """A key that is already a safe file name is the name itself, Unicode letters included."""
    keys = ["rainy-street", "shot_01", "猫の動画", "v1.2", "a_b"]
    assert video_stems(keys) == {key: key for key in keys}


def test_a_changed_key_gets_a_hash_of_the_raw_key() -> None:
    """Keys that sanitize alike stay apart: each changed one ends in a hash of itself."""
    stems = video_stems(["a/b", "a\\b", "a_b", "a b"])
    assert stems["a_b"] == "a_b"
    changed = [stems[k] for k in ("a/b", "a\\b", "a b")]
    assert all(s.startswith("a_b-") and len(s) == len("a_b-") + 10 for s in changed)
    assert len(set(changed)) == 3


def test_names_do_not_depend_on_order() -> None:
    """The same keys in another order (a rerun of an edited file) keep their names."""
    assert video_stems(HOSTILE) == video_stems(reversed(HOSTILE))


def table_of(keys: list[str]) -> StemTable:
    """A StemTable fed ``keys`` once, re-reading them as a batch file would for clashes."""
    table = StemTable()
    for key in keys:
        table.add(key)
    reads: list[set[str]] = []

    def find(folded: set[str]) -> list[str]:
        reads.append(set(folded))
        return [key for key in keys if _base_stem(key).casefold() in folded]

    table.finish(find)
    table.reads = reads  # type: ignore[attr-defined]
    return table


@pytest.mark.parametrize(
    "keys",
    [
        HOSTILE,
        list(reversed(HOSTILE)),
        ["rainy-street", "shot_01", "v1.2"],
        # "Cat" and "cat" clash; the literal key "cat-<hash of cat>" clashes in the next round
        ["Cat", "cat", _hashed("cat", "cat"), "CAT-x"],
        ["a/b", "a\\b", "a_b", "a b", "A_B"],
    ],
)
def test_stem_table_gives_the_stems_of_video_stems(keys: list[str]) -> None:
    """Reading the keys once (plus the few in a clash again) gives exactly video_stems."""
    table = table_of(keys)
    assert {key: table.stem(key) for key in keys} == video_stems(keys)


def test_stem_table_reads_again_only_on_a_clash() -> None:
    """Without a clash the keys are never read again; with one, only those keys' stems."""
    assert table_of(["a", "b", "c/d"]).reads == []  # type: ignore[attr-defined]
    table = table_of(["a", "B", "b"])
    assert table.reads == [{"b"}]  # type: ignore[attr-defined]
    assert table.stem("a") == "a" and table.stem("b") != table.stem("B")


def test_several_videos_are_numbered_apart_from_other_keys(tmp_path: Path) -> None:
    """A task with several videos saves STEM+N.mp4, which no other key's name can be."""
    task = Task(
        id="task_1",
        provider="apimart",
        status=TaskStatus.COMPLETED,
        videos=(Video(url="https://cdn/x/0.mp4"), Video(url="https://cdn/x/1.mp4")),
    )
    files = VideoFiles(tmp_path, "key", ["a", "a_1", "a+1"])
    assert [p.name for p in files.paths("a", task)] == ["a+0.mp4", "a+1.mp4"]
    assert files.paths("a+1", task)[0].name.startswith("a_1-")
    by_task = VideoFiles(tmp_path, "task", ["a"])
    assert [p.name for p in by_task.paths("a", task)] == ["task_1_0.mp4", "task_1_1.mp4"]


@pytest.fixture
def hostile_batch(tmp_path: Path) -> tuple[Path, list[str]]:
    """A batch file whose keys try to escape the videos folder or clash."""
    keys = ["../escape", "/abs/path", "Cat", "cat", "ok-key", "dots..", "new\nline"]
    lines = [
        {"key": key, "model": "Omni-Flash-Ext", "prompt": f"clip {i}", "duration": 4}
        for i, key in enumerate(keys)
    ]
    return write_jobs(tmp_path / "jobs.jsonl", lines), keys


def test_batch_saves_each_video_under_its_key(
    hostile_batch: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Every video is saved in DIR/videos under its key's safe name; a rerun keeps them."""
    jobs, keys = hostile_batch
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--simulate", "--sim-time-scale", "0.002"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    stems = video_stems(keys)
    results = read_results(out)
    assert [r["key"] for r in results] == keys
    for result in results:
        (video,) = result["videos"]
        assert Path(video) == out / "videos" / f"{stems[result['key']]}.mp4"
        assert Path(video).read_bytes()[4:8] == b"ftyp"
    assert stems["ok-key"] == "ok-key"
    files = sorted(p.name for p in (out / "videos").iterdir() if not p.name.startswith("."))
    assert files == sorted(f"{stem}.mp4" for stem in stems.values())
    assert {p.name for p in tmp_path.iterdir()} == {"jobs.jsonl", "out"}  # nothing escaped
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert [r["videos"] for r in read_results(out)] == [r["videos"] for r in results]


def test_video_names_task_keeps_task_ids(
    hostile_batch: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """``--video-names task`` names each video after its task id, as before."""
    jobs, _ = hostile_batch
    out = tmp_path / "out"
    done = run_cli(
        "batch", str(jobs), "--out", str(out), "--simulate", "--sim-time-scale", "0.002",
        "--video-names", "task",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for result in read_results(out):
        assert result["videos"] == [str(out / "videos" / f"{result['task_id']}.mp4")]
