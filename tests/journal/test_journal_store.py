"""Journal: the SQLite store itself (no network)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from omnivid import Journal, Task, TaskError, TaskStatus, Video, VideoRequest
from omnivid.errors import ConfigurationError
from omnivid.journal import Spending
from omnivid.providers import get_provider

SEEDS = Path(__file__).parents[1] / "fixtures" / "seeds"

REQUEST = VideoRequest(model="Omni-Flash-Ext", prompt="a fox", duration=6)


def _task(status: TaskStatus = TaskStatus.PENDING, **changes: object) -> Task:
    return Task(id="task_1", provider="apimart", model="Omni-Flash-Ext", status=status, **changes)  # type: ignore[arg-type]


def test_wal_and_synchronous_normal(journal: Journal, journal_path: Path) -> None:
    """The journal runs in WAL mode with synchronous=NORMAL (1) by default."""
    db = sqlite3.connect(journal_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert journal._connection().execute("PRAGMA synchronous").fetchone()[0] == 1


def test_full_durability(tmp_path: Path) -> None:
    """durability='full' fsyncs every commit (synchronous=FULL, 2)."""
    with Journal.open(tmp_path / "j.sqlite", durability="full") as j:
        assert j._connection().execute("PRAGMA synchronous").fetchone()[0] == 2


def test_intent_then_submitted_then_finished(journal: Journal) -> None:
    """An entry moves intent -> submitted -> completed, keeping what each step recorded."""
    journal.record_intent("a", REQUEST, provider="apimart", run="r1")
    entry = journal.get("a")
    assert entry is not None and entry.state == "intent" and entry.ambiguous
    assert entry.fingerprint == REQUEST.fingerprint() and entry.request == REQUEST.to_dict()
    assert entry.video_request() == REQUEST and entry.task_id is None

    journal.record_submitted("a", _task(), task_ids=["task_1"], attempts=1)
    entry = journal.get("a")
    assert entry is not None and entry.state == "submitted" and entry.task_id == "task_1"
    assert entry.task_ids == ("task_1",) and entry.attempts == 1

    done = _task(
        TaskStatus.COMPLETED,
        cost=0.4,
        completed_at=datetime(2025, 1, 1, tzinfo=UTC),
        videos=(Video("https://x/0.mp4", datetime(2025, 1, 2, tzinfo=UTC)),),
    )
    journal.record_finished("a", done, cost=0.4)
    entry = journal.get("a")
    assert entry is not None and entry.terminal and entry.state == "completed"
    assert entry.cost == 0.4 and entry.to_task() == done and entry.status == "completed"


def test_failed_task_records_its_error(journal: Journal) -> None:
    """A failed task's code and message become the entry's error text."""
    journal.record_intent("a", REQUEST, provider="apimart")
    failed = _task(TaskStatus.FAILED, error=TaskError("task_failed", "content moderation"))
    journal.record_finished("a", failed, cost=0.0)
    entry = journal.get("a")
    assert entry is not None and entry.state == "failed"
    assert entry.error == "task_failed: content moderation"


def test_not_submitted_and_errors(journal: Journal) -> None:
    """record_not_submitted creates or updates; record_error keeps the state."""
    journal.record_not_submitted("a", REQUEST, provider="apimart", reason="budget reached")
    journal.record_error("a", "noted")
    entry = journal.get("a")
    assert entry is not None and entry.state == "not_submitted" and entry.error == "noted"


def test_downloads_entries_and_counts(journal: Journal) -> None:
    """Downloads are stored as paths; entries() filters by state; counts() per state."""
    for key in ("b", "a", "c"):
        journal.record_intent(key, REQUEST, provider="apimart")
    journal.record_submitted("c", _task(), task_ids=["task_1"], attempts=1)
    journal.record_download("a", [Path("videos/a.mp4"), "videos/a2.mp4"])
    assert [e.key for e in journal.entries()] == ["a", "b", "c"]
    assert [e.key for e in journal.entries(state="submitted")] == ["c"]
    assert journal.counts() == {"intent": 2, "submitted": 1} and len(journal) == 3
    entry = journal.get("a")
    assert entry is not None and entry.downloads == (Path("videos/a.mp4"), Path("videos/a2.mp4"))


def test_integer_keys_are_stringified(journal: Journal) -> None:
    """Key 7 and key "7" are the same entry."""
    journal.record_intent(7, REQUEST, provider="apimart")
    assert journal.get("7") is not None and journal.get(7) is not None


def test_entries_survive_reopening(journal_path: Path) -> None:
    """What was committed is there after closing and reopening."""
    with Journal.open(journal_path) as j:
        j.record_intent("a", REQUEST, provider="apimart")
        j.record_submitted("a", _task(), task_ids=["task_1"], attempts=1)
    with Journal.open(journal_path) as j:
        entry = j.get("a")
    assert entry is not None and entry.task_id == "task_1"


def test_closed_journal_refuses_use(journal_path: Path) -> None:
    """After close(), using the journal is a ConfigurationError; close() is idempotent."""
    j = Journal.open(journal_path)
    j.close()
    j.close()
    assert j.closed
    with pytest.raises(ConfigurationError, match="closed"):
        j.get("a")


def test_not_a_journal(tmp_path: Path) -> None:
    """A file that is not a SQLite journal is a ConfigurationError."""
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a database" * 100)
    with pytest.raises(ConfigurationError, match="not a usable journal"):
        Journal.open(bad)


def test_other_schema_version(journal_path: Path) -> None:
    """A journal written by another schema version is refused, not misread."""
    Journal.open(journal_path).close()
    db = sqlite3.connect(journal_path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        Journal.open(journal_path)


SEED_TASKS = [
    ("apimart", "apimart_ext_task_completed.json", "Omni-Flash-Ext"),
    ("apimart", "apimart_gemini_task_completed.json", "gemini-omni-flash-preview"),
    ("evolink", "evolink_task_completed.json", "gemini-omni-flash-reference-to-video"),
    ("evolink", "evolink_task_failed.json", "gemini-omni-flash-reference-to-video"),
]
"""Finished and failed task-status bodies from the providers' documents, with their model."""


def test_bad_durability(journal_path: Path) -> None:
    """durability must be 'normal' or 'full'."""
    with pytest.raises(ConfigurationError, match="durability"):
        Journal.open(journal_path, durability="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("provider", "seed", "model"), SEED_TASKS)
def test_a_provider_task_is_kept_as_sent_and_read_back_whole(
    journal: Journal, provider: str, seed: str, model: str
) -> None:
    """A finished task keeps the provider's JSON; a reader gets the same Task back."""
    task = get_provider(provider).parse_task(json.loads((SEEDS / seed).read_text()), model=model)
    request = VideoRequest(model=model, prompt="a fox")
    journal.record_intent("a", request, provider=provider)
    journal.record_finished("a", task, cost=0.25)
    journal.close()
    with Journal.open(journal.path) as again:
        entry = again.get("a")
        assert entry is not None and entry.task_form == "provider" and entry.task == task.raw
        back = entry.to_task()
    assert back == task and back is not None
    assert (back.videos, back.error, back.cost) == (task.videos, task.error, task.cost)


@pytest.mark.parametrize(("provider", "seed", "model"), SEED_TASKS)
def test_a_response_body_is_kept_as_sent_and_read_back_whole(
    journal: Journal, provider: str, seed: str, model: str
) -> None:
    """A task recorded with its response text keeps that text; a reader gets the Task back."""
    body = (SEEDS / seed).read_text()
    task = get_provider(provider).parse_task(json.loads(body), model=model)
    journal.record_intent("a", VideoRequest(model=model, prompt="a fox"), provider=provider)
    journal.record_finished("a", task, cost=0.25, body=body)
    journal.close()
    db = sqlite3.connect(journal.path)
    try:
        assert db.execute("SELECT task, task_form FROM jobs").fetchone() == (body, "body")
    finally:
        db.close()
    with Journal.open(journal.path) as again:
        entry = again.get("a")
        assert entry is not None
        back = entry.to_task()
    assert back == task and back is not None
    assert (back.videos, back.error, back.cost, back.raw) == (
        task.videos,
        task.error,
        task.cost,
        task.raw,
    )


def test_a_task_without_raw_is_kept_in_its_own_form(journal: Journal) -> None:
    """A task built by hand (no provider JSON) is stored in its cattrs form."""
    journal.record_intent("a", REQUEST, provider="apimart")
    done = _task(TaskStatus.COMPLETED, cost=0.4)
    journal.record_finished("a", done, cost=0.4)
    entry = journal.get("a")
    assert entry is not None and entry.task_form == "omnivid" and entry.to_task() == done


def test_a_read_sees_the_lazy_writes_before_it(journal: Journal) -> None:
    """A lazy record is committed before a read, so every reader sees it."""
    journal.record_intent("a", REQUEST, provider="apimart")
    journal.record_finished("a", _task(TaskStatus.COMPLETED), cost=0.1)
    entry = journal.get("a")
    assert entry is not None and entry.state == "completed"
    db = sqlite3.connect(journal.path)
    try:
        assert db.execute("SELECT state FROM jobs WHERE key = 'a'").fetchone() == ("completed",)
    finally:
        db.close()


def test_write_many_tells_which_statement_changed_nothing(journal: Journal) -> None:
    """In one commit, a new intent for a key already taken is reported, the others written."""

    def intent(key: str) -> tuple[str, tuple[object, ...]]:
        return journal.intent_statement(key, REQUEST, provider="apimart", new=True)

    assert journal.write_many([intent("a"), intent("a"), intent("b")]) == [True, False, True]
    assert journal.keys() == {"a", "b"}


def test_a_version_1_journal_is_migrated(journal_path: Path) -> None:
    """A journal of schema 1 (tasks in cattrs form) opens, and its tasks still read back."""
    done = _task(TaskStatus.COMPLETED, cost=0.4)
    with Journal.open(journal_path) as j:
        j.record_intent("a", REQUEST, provider="apimart")
        j.record_finished("a", done, cost=0.4)
    _sql(journal_path, "ALTER TABLE jobs DROP COLUMN task_form")  # back to what schema 1 wrote
    _sql(journal_path, "ALTER TABLE jobs DROP COLUMN reserved")
    _sql(journal_path, "UPDATE meta SET value = '1' WHERE name = 'schema'")
    with Journal.open(journal_path) as j:
        entry = j.get("a")
        assert entry is not None and entry.task_form == "omnivid" and entry.to_task() == done
    assert _sql(journal_path, "SELECT value FROM meta WHERE name = 'schema'") == [("4",)]


def test_a_version_2_journal_is_migrated(journal_path: Path) -> None:
    """A journal of schema 2 opens as version 4 and its provider-form tasks still read back."""
    task = get_provider("evolink").parse_task(
        json.loads((SEEDS / "evolink_task_completed.json").read_text())
    )
    with Journal.open(journal_path) as j:
        j.record_intent("a", REQUEST, provider="evolink")
        j.record_finished("a", task, cost=0.4)
    _sql(journal_path, "ALTER TABLE jobs DROP COLUMN reserved")
    _sql(journal_path, "UPDATE meta SET value = '2' WHERE name = 'schema'")
    with Journal.open(journal_path) as j:
        entry = j.get("a")
        assert entry is not None and entry.task_form == "provider" and entry.to_task() == task
    assert _sql(journal_path, "SELECT value FROM meta WHERE name = 'schema'") == [("4",)]


def test_a_version_3_journal_is_migrated(journal_path: Path) -> None:
    """A schema 3 journal gets reserved (None in old rows, counted as nothing) and records it."""
    with Journal.open(journal_path) as j:
        j.record_intent("a", REQUEST, provider="apimart", reserved=0.4)
        j.record_submitted("a", _task(TaskStatus.PENDING), task_ids=["t_1"], attempts=1)
    _sql(journal_path, "ALTER TABLE jobs DROP COLUMN reserved")  # back to what schema 3 wrote
    _sql(journal_path, "UPDATE meta SET value = '3' WHERE name = 'schema'")
    with Journal.open(journal_path) as j:
        entry = j.get("a")
        assert entry is not None and entry.state == "submitted" and entry.reserved is None
        assert j.spending("apimart") == Spending(spent=0.0, reserved=0.0)
        j.record_intent("b", REQUEST, provider="apimart", reserved=0.4)
        assert j.spending("apimart") == Spending(spent=0.0, reserved=0.4)
    assert _sql(journal_path, "SELECT value FROM meta WHERE name = 'schema'") == [("4",)]


def test_spending_counts_costs_and_open_reservations(journal: Journal) -> None:
    """spending() sums costs and the reservations of intent and submitted entries per provider."""
    journal.record_intent("intent", REQUEST, provider="apimart", reserved=0.4)
    journal.record_intent("running", REQUEST, provider="apimart", reserved=0.4)
    journal.record_submitted(
        "running", _task(TaskStatus.PENDING), task_ids=["t_1"], attempts=1, reserved=1.5
    )
    journal.record_intent("done", REQUEST, provider="apimart", reserved=0.4)
    journal.record_finished("done", _task(TaskStatus.COMPLETED, cost=0.3), cost=0.3)
    journal.record_intent("refused", REQUEST, provider="apimart", reserved=0.4)
    journal.record_not_submitted("refused", REQUEST, provider="apimart", reason="HTTP 400")
    journal.record_intent("other", REQUEST, provider="evolink", reserved=50.0)
    assert journal.spending("apimart") == Spending(spent=0.3, reserved=0.4 + 1.5)
    assert journal.spending("evolink") == Spending(spent=0.0, reserved=50.0)
    entry = journal.get("running")
    assert entry is not None and entry.reserved == 1.5


def _sql(path: Path, statement: str) -> list[tuple[object, ...]]:
    """Run one statement on the journal file from another connection; its rows."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(statement).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def test_not_submitted_never_overwrites_a_task(journal: Journal) -> None:
    """A refused job under a key whose entry holds a task id or a result leaves it as it is."""
    journal.record_intent("a", REQUEST, provider="apimart", run="r1")
    journal.record_submitted("a", _task(), task_ids=["task_1"], attempts=1)
    journal.record_not_submitted("a", REQUEST, provider="apimart", reason="budget", run="r1")
    entry = journal.get("a")
    assert entry is not None and entry.state == "submitted" and entry.task_id == "task_1"


def test_not_submitted_keeps_an_earlier_runs_intent(journal: Journal) -> None:
    """An intent left by an earlier run stays ambiguous; this run's own intent is refused."""
    journal.record_intent("old", REQUEST, provider="apimart", run="r1")
    journal.record_intent("mine", REQUEST, provider="apimart", run="r2")
    for key in ("old", "mine"):
        journal.record_not_submitted(key, REQUEST, provider="apimart", reason="HTTP 400", run="r2")
    assert [journal.get(k).state for k in ("old", "mine")] == ["intent", "not_submitted"]  # type: ignore[union-attr]
