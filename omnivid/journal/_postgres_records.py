"""The PostgreSQL journal's lazy records: finished tasks, error notes, jobs that never reached
the provider, downloads. They are queued by sync calls and committed by one background task,
the records of a few event-loop turns together.

Each kind of record is committed by **one statement for many jobs** (``UPDATE ... FROM
unnest(%s::text[], ...)``): a flush of a few hundred finished tasks is one round trip and one
transaction. Each job's record carries its fence (the token this worker holds, or None: then
it applies only when no other worker holds the job); the statement returns the keys it
changed, and the others are reported as refused. A key recorded twice in one flush splits the
flush into consecutive statements, so records apply in the order they were made.
``not_submitted`` records (an upsert, rare) are one statement each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from ._postgres_schema import Database, dumps

__all__ = ["Records"]

log = logging.getLogger("omnivid")

Kind = Literal["finished", "error", "downloads", "not_submitted"]
_FENCE = (
    "((v.token IS NOT NULL AND j.token = v.token) OR (v.token IS NULL AND (j.lease_until IS NULL "
    "OR j.lease_until <= now() OR j.worker = %(worker)s)))"
)
_MANY: dict[str, tuple[str, str]] = {  # kind -> (SET ..., the unnest columns with their types)
    "finished": (
        "state = v.state, task_id = v.task_id, status = v.status, cost = v.cost, task = v.task, "
        "task_form = v.form, error = v.error, "
        "lease_until = CASE WHEN v.terminal THEN NULL ELSE j.lease_until END",
        "state text, task_id text, status text, cost float8, task text, form text, "
        "error text, terminal bool",
    ),
    "error": ("error = v.error", "error text"),
    "downloads": (
        "downloads = ARRAY(SELECT jsonb_array_elements_text(v.paths::jsonb))",
        "paths text",
    ),
}
_NOT_SUBMITTED = (
    "INSERT INTO omnivid_jobs AS j (batch, key, fingerprint, provider, model, request, state, "
    "error, run, worker) VALUES (%(batch)s, %(key)s, %(fingerprint)s, %(provider)s, "
    "%(model)s, %(request)s, 'not_submitted', %(error)s, %(run)s, %(worker)s) "
    "ON CONFLICT (batch, key) DO UPDATE SET state = 'not_submitted', error = excluded.error, "
    "run = excluded.run, lease_until = NULL, updated_at = clock_timestamp() WHERE {fence} "
    "RETURNING key"
)
_NOT_SUBMITTED_FENCE = {
    True: "j.token = %(token)s",
    False: "j.state IN ('queued', 'not_submitted') AND (j.lease_until IS NULL "
    "OR j.lease_until <= now() OR j.worker = %(worker)s)",
}


def _many_sql(kind: str) -> str:
    assignments, columns = _MANY[kind]
    names = [c.split()[0] for c in columns.split(", ")]
    arrays = ", ".join(f"%({n})s::{t}[]" for n, t in (c.split() for c in columns.split(", ")))
    return (
        f"UPDATE omnivid_jobs j SET {assignments}, updated_at = clock_timestamp() "
        f"FROM unnest(%(keys)s::text[], %(tokens)s::int8[], {arrays}) "
        f"AS v(key, token, {', '.join(names)}) "
        f"WHERE j.batch = %(batch)s AND j.key = v.key AND {_FENCE} RETURNING j.key"
    )


_SQL = {kind: _many_sql(kind) for kind in _MANY}
_COLUMNS = {
    kind: [c.split()[0] for c in columns.split(", ")] for kind, (_, columns) in _MANY.items()
}

Record = tuple[Kind, str, "int | None", dict[str, Any]]  # kind, key, token, values


class Records:
    """The queue of lazy records and the task that commits them (see module)."""

    def __init__(
        self, db: Database, *, batch: str, worker: str, refused: Callable[[str], None]
    ) -> None:
        self._db = db
        self._batch = batch
        self._worker = worker
        self._refused = refused
        self._pending: list[Record] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # the background commit's last failure

    def __len__(self) -> int:
        return len(self._pending)

    def queue(self, kind: Kind, key: str, token: int | None, values: dict[str, Any]) -> None:
        """Queue a record (committed within a few loop turns)."""
        self._pending.append((kind, key, token, values))
        self.wake()

    def wake(self) -> None:
        """Start committing what is queued (needs a running event loop)."""
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the background task (what is queued stays queued)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def drop(self) -> int:
        """Forget what is queued; how many records that was."""
        count = len(self._pending)
        self._pending.clear()
        return count

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for _ in range(4):  # the records of a few loop turns share a flush
                await asyncio.sleep(0)
            try:
                await self.drain()
            except Exception as exc:  # kept queued: the next record, flush or close retries
                self.error = exc
                log.warning("journal records held (%s): retried on the next record or flush", exc)

    async def drain(self) -> None:
        """Commit every queued record now; on an error the records not committed stay queued
        (in order) and the error is raised."""
        async with self._lock:
            while self._pending:
                group = self._group()
                try:
                    changed = await self._commit(group)
                except BaseException:
                    self._pending[:0] = group
                    raise
                self.error = None
                for _, key, _, _ in group:
                    if key not in changed:
                        self._refused(key)

    def _group(self) -> list[Record]:
        """Take the longest run of one kind with no key twice (one statement)."""
        first = self._pending[0]
        if first[0] == "not_submitted":
            self._pending.pop(0)
            return [first]
        keys: set[str] = set()
        end = 0
        for kind, key, _, _ in self._pending:
            if kind != first[0] or key in keys or end == 1000:
                break
            keys.add(key)
            end += 1
        group, self._pending = self._pending[:end], self._pending[end:]
        return group

    async def _commit(self, group: list[Record]) -> set[str]:
        kind, key, token, values = group[0]
        if kind == "not_submitted":
            params = {**values, "batch": self._batch, "key": key, "worker": self._worker}
            if token is not None:
                params["token"] = token
            sql = _NOT_SUBMITTED.format(fence=_NOT_SUBMITTED_FENCE[token is not None])
        else:
            params = {"batch": self._batch, "worker": self._worker}
            params["keys"] = [r[1] for r in group]
            params["tokens"] = [r[2] for r in group]
            for column in _COLUMNS[kind]:
                params[column] = [r[3][column] for r in group]
            sql = _SQL[kind]
        rows = await self._db.fetch(f"recording {kind.replace('_', ' ')}", sql, params)
        return {str(k) for (k,) in rows}


def finished_values(state: str, task_id: str, status: str, cost: float, task: str, form: str,
                    error: str | None, terminal: bool) -> dict[str, Any]:  # fmt: skip
    """The values of a ``finished`` record."""
    return {"state": state, "task_id": task_id, "status": status, "cost": cost, "task": task,
            "form": form, "error": error, "terminal": terminal}  # fmt: skip


def downloads_values(paths: list[str]) -> dict[str, Any]:
    """The values of a ``downloads`` record (the paths as a JSON array)."""
    return {"paths": dumps(paths)}
