"""A durable SQLite journal of batch jobs, so a batch can stop at any moment and resume.

One row per job key; its ``state`` moves as drawn in :mod:`._base`.

* ``intent`` is committed **before** the submit's POST: the request, its fingerprint, the
  provider. A row left in ``intent`` means the submit's answer is unknown (the process died,
  or the answer was lost): rerunning reports it and resubmits only when asked.
* ``submitted`` is committed **right after** the POST returns, with the task id (every task id
  a job ever had is kept in ``task_ids``): rerunning polls it, never resubmits it.
* both record the cost the batch reserved (``reserved``), so a budget holds over reruns and
  kills: :meth:`Journal.spending` sums the costs of finished tasks and the reservations of
  ``intent`` and ``submitted`` rows (see :mod:`omnivid.journal._base`).
* the terminal states record the task, its cost and error; downloads are added by the CLI
  (:meth:`Journal.record_download`). The task is kept as the provider sent it and read back
  through the provider's adapter, so a rerun hands back the same ``Task`` without a request:
  a batch keeps the text of the task-status response the task was read from, unchanged
  (``task_form = 'body'``, read by ``Provider.parse_task``: no encoding on the batch's path);
  a task from elsewhere keeps its ``Task.raw`` (``'provider'``, read by
  ``Provider.task_from_raw``); a task without ``raw`` (built by hand) is kept in its cattrs
  form (``'omnivid'``).

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by default: a commit is
in the WAL file (the OS page cache) when it returns, so it survives the process being killed
(SIGKILL) at any moment; only an OS crash or power cut can lose the last commits. Pass
``durability="full"`` to fsync every commit (survives power loss; each commit then costs a
disk flush).

What must be durable at once is committed at once: the intent (before the POST), the task id
(right after it), ``not_submitted`` and downloads. A batch hands its intents and task ids to
:meth:`Journal.write_many` in groups, one transaction per few event-loop turns for all its
jobs (:mod:`omnivid.journal._group_commit`); each job still waits for its own record's commit.

A terminal result (``record_finished``) and error notes are *lazy*: they are held in memory
and join the next commit, or are committed after ``lazy_limit`` of them, at ``flush()`` or
``close()``, or before any read. Losing one to a crash costs nothing but a poll: the entry
still says ``submitted`` with its task id, so a rerun reads the result again.

A commit executes each run of statements with the same SQL (a group's intents, its task ids,
the pending results) with one ``executemany``. When a run changes fewer rows than it has
statements (a key taken by another job: ``new=True``), the transaction is rolled back and
replayed statement by statement, to tell which ones changed nothing.

What is never stored: the API key or any header. The request is stored as given by the caller
(``VideoRequest.to_dict()``, as canonical JSON).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from .._models import Task, VideoRequest, converter
from ..errors import ConfigurationError
from ._base import OPEN_STATES, TERMINAL_STATES, JournalEntry, JournalState, Spending
from ._group_commit import GroupCommit, Statement
from ._rates import SqliteRates

__all__ = ["TERMINAL_STATES", "Journal", "JournalEntry", "JournalState", "Statement"]


_SCHEMA_VERSION = "4"  # 2: task_form; 3: task_form 'body'; 4: reserved (older ones migrate)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    request     TEXT NOT NULL,
    state       TEXT NOT NULL,
    task_id     TEXT,
    task_ids    TEXT NOT NULL DEFAULT '[]',
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT,
    cost        REAL,
    task        TEXT,
    task_form   TEXT,
    error       TEXT,
    downloads   TEXT NOT NULL DEFAULT '[]',
    run         TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    reserved    REAL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = (
    "key, fingerprint, provider, model, request, state, task_id, task_ids, attempts, status, "
    "cost, task, task_form, error, downloads, run, created_at, updated_at, reserved"
)
_TO_4 = (
    "ALTER TABLE jobs ADD COLUMN reserved REAL; UPDATE meta SET value = '4' WHERE name = 'schema';"
)
_MIGRATIONS = {
    "1": "ALTER TABLE jobs ADD COLUMN task_form TEXT; "
    "UPDATE jobs SET task_form = 'omnivid' WHERE task IS NOT NULL; " + _TO_4,
    # 3 adds a value of task_form, which an omnivid reading version 2 would misread
    "2": _TO_4,
    # 4 records reservations (NULL in older rows: unknown, a rerun reserves those jobs again)
    "3": _TO_4,
}


class Journal(SqliteRates):
    """The SQLite journal (see the module docstring). Open with :meth:`Journal.open`.

    Safe to share between the batches of one process (for example one per provider) and
    between threads; one process at a time should run batches on a journal file.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, lazy_limit: int = 64) -> None:
        self._db: sqlite3.Connection | None = connection
        self.path = path
        self.lazy_limit = lazy_limit
        self._lock = threading.Lock()
        self._lazy: list[Statement] = []  # lazy writes, committed with the next commit
        self._group = GroupCommit(self)  # the batches' intents and task ids

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "full"] = "normal",
    ) -> Journal:
        """Open (creating if needed) the journal at ``path``, and its folder."""
        if str(path).lower().startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("a PostgreSQL journal: client.map(journal=URL, batch=NAME)")
        if durability not in ("normal", "full"):
            raise ConfigurationError(f"durability={durability!r}: must be 'normal' or 'full'")
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open the journal {target}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigurationError(f"the journal {target} cannot use WAL mode ({mode})")
            db.execute(f"PRAGMA synchronous = {durability.upper()}")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            elif row[0] in _MIGRATIONS:
                db.executescript(f"BEGIN; {_MIGRATIONS[row[0]]} COMMIT;")
            elif row[0] != _SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the journal {target} has schema version {row[0]}; this omnivid reads "
                    f"version {_SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigurationError(f"{target} is not a usable journal: {exc}") from None
        except BaseException:
            db.close()
            raise
        return cls(db, target)

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r}{'' if self._db else ' closed'}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Commit pending lazy writes and close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._commit_lazy()
                self._db.close()
                self._db = None

    def flush(self) -> None:
        """Commit pending lazy writes now."""
        with self._lock:
            if self._db is not None:
                self._commit_lazy()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._db is None

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str | int) -> JournalEntry | None:
        """The entry for ``key`` (stringified), or None."""
        row = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE key = ?", (str(key),)).fetchone()
        return _entry(row) if row else None

    def entries(self, *, state: str | None = None) -> Iterator[JournalEntry]:
        """Every entry (or those in ``state``), in key order."""
        if state is None:
            rows = self._query(f"SELECT {_COLUMNS} FROM jobs ORDER BY key", ()).fetchall()
        else:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY key", (state,)
            ).fetchall()
        for row in rows:
            yield _entry(row)

    def keys(self) -> set[str]:
        """Every key in the journal."""
        return {str(k) for (k,) in self._query("SELECT key FROM jobs", ()).fetchall()}

    def counts(self) -> dict[str, int]:
        """Number of entries per state."""
        rows = self._query("SELECT state, COUNT(*) FROM jobs GROUP BY state", ()).fetchall()
        return {str(state): int(n) for state, n in rows}

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM jobs", ()).fetchone()[0])

    def spending(self, provider: str) -> Spending:
        """What counts against ``provider``'s budget: the costs of its entries and the
        reservations of its open ones (``intent``, ``submitted``)."""
        spent, reserved = self._query(
            "SELECT COALESCE(SUM(cost), 0), COALESCE(SUM(CASE WHEN state IN "
            f"({', '.join(repr(s) for s in sorted(OPEN_STATES))}) THEN reserved END), 0) "
            "FROM jobs WHERE provider = ?",
            (provider,),
        ).fetchone()
        return Spending(spent=float(spent), reserved=float(reserved))

    # -- writing: record_* commit (or queue, lazy ones); *_statement only build, for write_many
    def record_intent(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str | None = None,
        run: str | None = None,
        new: bool = False,
        reserved: float = 0.0,
    ) -> bool:
        """Commit the intent to submit ``request`` under ``key`` (before the POST), with the
        cost ``reserved`` for it.

        With ``new=True`` the key must not be in the journal yet: False (nothing written)
        when it is.
        """
        statement = self.intent_statement(
            key,
            request,
            provider=provider,
            fingerprint=fingerprint,
            run=run,
            new=new,
            reserved=reserved,
        )
        return self.write_many([statement])[0]

    def intent_statement(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str | None = None,
        run: str | None = None,
        new: bool = False,
        request_json: str | None = None,
        reserved: float = 0.0,
    ) -> Statement:
        """The statement :meth:`record_intent` commits, for :meth:`write_many`.

        ``request_json``: the request's JSON, when the caller has it already
        (``VideoRequest.fingerprint_and_json``)."""
        now = time.time()
        conflict = (
            "NOTHING"
            if new
            else "UPDATE SET fingerprint = excluded.fingerprint, provider = excluded.provider, "
            "model = excluded.model, request = excluded.request, state = 'intent', "
            "status = NULL, error = NULL, task = NULL, run = excluded.run, "
            "updated_at = excluded.updated_at, reserved = excluded.reserved"
        )
        return (
            "INSERT INTO jobs (key, fingerprint, provider, model, request, state, run, "
            "created_at, updated_at, reserved) VALUES (?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?) "
            f"ON CONFLICT (key) DO {conflict}",
            (
                str(key),
                fingerprint or request.fingerprint(),
                provider,
                request.model,
                request_json or _dumps(request.to_dict()),
                run,
                now,
                now,
                reserved,
            ),
        )

    async def write_intent(
        self,
        key: str,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str,
        run: str,
        new: bool,
        request_json: str | None = None,
        reserved: float = 0.0,
    ) -> bool:
        """Commit the intent with those of the same few loop turns (:class:`GroupCommit`);
        whether it was written (see :meth:`record_intent`)."""
        statement = self.intent_statement(
            key,
            request,
            provider=provider,
            fingerprint=fingerprint,
            run=run,
            new=new,
            request_json=request_json,
            reserved=reserved,
        )
        return await self._group.write(statement)

    async def write_submitted(
        self,
        key: str,
        task: Task,
        *,
        task_ids: list[str],
        attempts: int,
        reserved: float | None = None,
    ) -> None:
        """Commit the task id with the writes of the same few loop turns."""
        statement = self.submitted_statement(
            key, task, task_ids=task_ids, attempts=attempts, reserved=reserved
        )
        await self._group.write(statement)

    def record_submitted(
        self,
        key: str | int,
        task: Task,
        *,
        task_ids: Sequence[str],
        attempts: int,
        reserved: float | None = None,
    ) -> None:
        """Commit the task id the submit returned (right after the POST).

        ``task_ids`` is the job's whole list (the last one is ``task.id``); ``reserved`` the
        cost now reserved for the task (None: keep the intent's).
        """
        statement = self.submitted_statement(
            key, task, task_ids=task_ids, attempts=attempts, reserved=reserved
        )
        self.write_many([statement])

    def submitted_statement(
        self,
        key: str | int,
        task: Task,
        *,
        task_ids: Sequence[str],
        attempts: int,
        reserved: float | None = None,
    ) -> Statement:
        """The statement :meth:`record_submitted` commits, for :meth:`write_many`."""
        if len(task_ids) == 1:  # the common case, without serializing the list
            ids_sql, ids = "json_array(?)", task_ids[0]
        else:
            ids_sql, ids = "?", _dumps(list(task_ids))
        return (
            f"UPDATE jobs SET state = 'submitted', task_id = ?, task_ids = {ids_sql}, "
            "attempts = ?, status = ?, error = NULL, updated_at = ?, "
            "reserved = COALESCE(?, reserved) WHERE key = ?",
            (task.id, ids, attempts, task.status.value, time.time(), reserved, str(key)),
        )

    def record_finished(
        self, key: str | int, task: Task, *, cost: float, body: str | None = None
    ) -> None:
        """Record a terminal task: its status, JSON, cost and error (lazy, see module).

        ``body``: the text of the task-status response ``task`` was read from, kept as it is
        (it must be JSON the provider's ``parse_task`` reads). Without it the JSON kept is
        ``task.raw``, the provider's task object, or the task's cattrs form when it has no
        ``raw``; each is read back by :meth:`JournalEntry.to_task`."""
        state = task.status.value if task.is_terminal else "submitted"
        error = f"{task.error.code}: {task.error.message}" if task.error else None
        if body is not None:
            form, blob = "body", body
        elif task.raw:
            form, blob = "provider", _dumps(task.raw)
        else:
            form, blob = "omnivid", _dumps(converter.unstructure(task))
        self._write_lazy(
            "UPDATE jobs SET state = ?, task_id = ?, status = ?, cost = ?, task = ?, "
            "task_form = ?, error = ?, updated_at = ? WHERE key = ?",
            (state, task.id, task.status.value, cost, blob, form, error, time.time(), str(key)),
        )

    def record_error(self, key: str | int, message: str) -> None:
        """Note an error on the entry without changing its state (e.g. a timeout, an
        ambiguous submit); lazy, see module."""
        self._write_lazy(
            "UPDATE jobs SET error = ?, updated_at = ? WHERE key = ?",
            (message, time.time(), str(key)),
        )

    def record_not_submitted(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        reason: str,
        fingerprint: str | None = None,
        run: str | None = None,
    ) -> None:
        """Commit that the job never reached the provider (it may be submitted on a rerun).

        An entry that holds more than that is left as it is: a task id or a result (a job
        refused under a key another job of the batch already finished), or an intent of an
        earlier run (its POST may have been accepted: it stays ambiguous). This run's own
        intent becomes ``not_submitted``: this run knows its POST was refused or never sent."""
        now = time.time()
        self._write(
            "INSERT INTO jobs (key, fingerprint, provider, model, request, state, error, run, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'not_submitted', ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET state = 'not_submitted', error = excluded.error, "
            "run = excluded.run, updated_at = excluded.updated_at "
            "WHERE jobs.state = 'not_submitted' "
            "OR (jobs.state = 'intent' AND jobs.run IS excluded.run)",
            (
                str(key),
                fingerprint or request.fingerprint(),
                provider,
                request.model,
                _dumps(request.to_dict()),
                reason,
                run,
                now,
                now,
            ),
        )

    def record_download(self, key: str | int, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Commit the files a job's videos were saved to (replacing earlier ones)."""
        self._write(
            "UPDATE jobs SET downloads = ?, updated_at = ? WHERE key = ?",
            (_dumps([os.fspath(p) for p in paths]), time.time(), str(key)),
        )

    # -- machinery ---------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise ConfigurationError(f"the journal {self.path} is closed")
        return self._db

    def _query(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock:
            self._commit_lazy()  # a read sees every write made before it
            return self._connection().execute(sql, params)

    def _write(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Execute and commit at once (with any pending lazy writes); True if a row changed."""
        return self.write_many([(sql, params)])[0]

    def write_many(self, statements: Sequence[Statement]) -> list[bool]:
        """Execute ``statements`` in order and commit them, after any pending lazy writes, in
        one transaction; for each, whether it changed a row.

        On an error nothing of the transaction is kept (the lazy writes included: they only
        cost a poll on a rerun) and the error is raised.
        """
        with self._lock:
            return self._commit(statements)

    def _write_lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        """Hold a write for the next commit (see the module docstring)."""
        with self._lock:
            self._connection()
            self._lazy.append((sql, params))
            if len(self._lazy) >= self.lazy_limit:
                self._commit(())

    def _commit_lazy(self) -> None:
        if self._lazy and self._db is not None:
            self._commit(())

    def _commit(self, statements: Sequence[Statement]) -> list[bool]:
        """Commit the lazy writes and ``statements`` (under the lock)."""
        db = self._connection()
        lazy, self._lazy = self._lazy, []
        todo = [*lazy, *statements] if lazy else statements
        if len(todo) == 1:  # autocommit mode (isolation_level=None): one transaction
            sql, params = todo[0]
            changed = [db.execute(sql, params).rowcount > 0]
        else:
            changed = _transaction(db, todo)
        return changed[len(lazy) :]


def _transaction(db: sqlite3.Connection, statements: Sequence[Statement]) -> list[bool]:
    """Execute ``statements`` in one transaction; for each, whether it changed a row."""
    try:
        db.execute("BEGIN")
        changed = _execute_runs(db, statements)
        if changed is None:  # a statement changed nothing: replay one by one to see which
            db.execute("ROLLBACK")
            db.execute("BEGIN")
            changed = [db.execute(sql, params).rowcount > 0 for sql, params in statements]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return changed


def _execute_runs(db: sqlite3.Connection, statements: Sequence[Statement]) -> list[bool] | None:
    """Execute each run of statements sharing their SQL with one ``executemany``; None as
    soon as a run changes fewer rows than it has statements."""
    for sql, run in itertools.groupby(statements, key=lambda statement: statement[0]):
        params = [p for _, p in run]
        if len(params) == 1:
            changed = db.execute(sql, params[0]).rowcount
        else:
            changed = db.executemany(sql, params).rowcount
        if changed != len(params):
            return None
    return [True] * len(statements)


_dumps: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact JSON; one encoder, not one per call as ``json.dumps`` with options builds."""


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    (
        key,
        fingerprint,
        provider,
        model,
        request,
        state,
        task_id,
        task_ids,
        attempts,
        status,
        cost,
        task,
        task_form,
        error,
        downloads,
        run,
        created_at,
        updated_at,
        reserved,
    ) = row
    return JournalEntry(
        key=key,
        fingerprint=fingerprint,
        provider=provider,
        model=model,
        request=json.loads(request),
        state=state,
        task_id=task_id,
        task_ids=tuple(json.loads(task_ids)),
        attempts=int(attempts),
        status=status,
        cost=cost,
        task=json.loads(task) if task else None,
        task_form=task_form,
        error=error,
        downloads=tuple(Path(p) for p in json.loads(downloads)),
        run=run,
        created_at=float(created_at),
        updated_at=float(updated_at),
        reserved=reserved,
    )
