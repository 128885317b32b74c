"""A PostgreSQL journal: one named batch shared by any number of worker processes, on any hosts.

Each job is a row of ``omnivid_jobs`` keyed by (batch, key) holding what the SQLite journal
holds (same states, same task forms: entries read back as the same :class:`JournalEntry`),
plus its **claim**: ``worker`` (who holds or last held it), ``token`` (its fencing token) and
``lease_until``. Tables and schema versions: :mod:`._postgres_schema`.

Claims, leases and fencing (every time is the database's: ``now()``, never a host clock)
-----------------------------------------------------------------------------------------
* :meth:`PostgresJournal.claim` takes one job, :meth:`~PostgresJournal.claim_next` the next
  ones needing work (``FOR UPDATE SKIP LOCKED``). A claim succeeds only when no other worker's
  lease is live, and increments the row's token: the token this worker got is its fence.
  A job is handed out when it is ``queued`` (added, never worked on), ``not_submitted`` or
  ``submitted`` (to poll its task: never resubmitted). A job in ``intent`` whose holder's
  lease ran out is **ambiguous**: the holder may have sent the POST. It is reported
  (``Claim.status == "ambiguous"``, :meth:`~PostgresJournal.ambiguous`) and handed out only
  to an explicit ``claim(key, ambiguous=True)`` (``resubmit_ambiguous``). Finished jobs are
  never handed out (``"done"``: their outcome is the entry, ``JobRow.worker`` ran them).
* Every later write for the job carries the token (``WHERE token = %s``): once another worker
  claimed it, the write changes nothing and is refused (:class:`LeaseLostError`; for the lazy
  records, the key is added to :attr:`~PostgresJournal.lost` and logged). A refused
  ``write_submitted`` still appends the task id to the row's ``task_ids`` before raising:
  a task id is never lost.
* Leases last ``lease`` seconds (default 120, longer than a POST's timeout), are pushed to at
  least ``now() + lease`` by the intent (right before the POST), renewed for all of a worker's
  jobs by one ``UPDATE`` (:meth:`~PostgresJournal.renew`, :meth:`~PostgresJournal.heartbeat`)
  and released when the job ends. Without a claim held (the protocol's path, a batch that
  does not claim), ``write_intent`` claims in the same statement a job nobody holds that is
  ``queued`` or ``not_submitted``, or non-final and last held by this worker: never another
  worker's ``intent`` or ``submitted`` job, whatever this worker's cache says (``False``: a
  conflict to report). The lazy records only touch rows nobody else holds.

What is guaranteed: a job is held by at most one worker at a time; no job leaves ``intent``
or ``submitted`` for a new submit without an explicit ``ambiguous=True``; a stale holder
cannot overwrite its successor's records; budget totals (:mod:`._postgres_money`) are
changed by single statements, so they hold over every worker and survive kills.

The protocol's sync methods
---------------------------
psycopg's connections here are async, and a sync method must not block the event loop on the
network. So :meth:`~PostgresJournal.keys` and :meth:`~PostgresJournal.get` answer from a
cache: the rows read at :meth:`~PostgresJournal.open` (or :meth:`~PostgresJournal.refresh`),
by claims and :meth:`~PostgresJournal.fetch`, with this worker's own writes applied to them
(their ``updated_at`` from its clock); a job this worker lost leaves the cache. Await
:meth:`~PostgresJournal.fetch` for the database's current row. The lazy records
(``record_finished``, ``record_error``, ``record_not_submitted``, ``record_download``) are
queued and committed by a background writer, a few loop turns' worth per transaction;
``flush()`` and ``close()`` start that writer and return; **await** :meth:`aflush` /
:meth:`aclose` to know they are committed. A record lost to a crash costs a poll, never a
submit: the row still says ``submitted`` with its task id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs

from .._models import Task, VideoRequest, converter
from ..errors import ConfigurationError
from ._base import OPEN_STATES, JournalEntry, Spending
from ._postgres_gate import PostgresGateState
from ._postgres_money import Money
from ._postgres_reads import Reads
from ._postgres_records import Kind, Records, downloads_values, finished_values
from ._postgres_schema import (
    CLAIM,
    CLAIM_NEXT,
    FREE,
    INTENT_CLAIM,
    INTENT_FENCED,
    ORPHAN,
    SUBMITTED,
    TERMINAL,
    WHERE,
    Claim,
    ClaimStatus,
    Database,
    JobRow,
    LeaseLostError,
    dumps,
    job_row,
)

__all__ = ["Claim", "ClaimStatus", "JobRow", "LeaseLostError", "PostgresJournal"]

log = logging.getLogger("omnivid")

# the rows an intent may claim without a claim held (the protocol's path, see module)
_UNCLAIMED = (
    "(j.state IN ('queued', 'not_submitted') "
    f"OR (j.worker = excluded.worker AND j.state NOT IN {TERMINAL}))"
)


class PostgresJournal(Money, Reads):
    """The journal of one batch in PostgreSQL (see the module docstring). Open with
    :meth:`open`; close with ``await journal.aclose()``."""

    def __init__(self, db: Database, *, batch: str, worker: str, lease: float) -> None:
        self._db = db
        self.batch = batch
        self.worker = worker
        self.lease = lease
        self._interval = timedelta(seconds=lease)
        self._cache: dict[str, JournalEntry] = {}
        self._tokens: dict[str, int] = {}  # the fencing token of each job this worker claimed
        self._leased: set[str] = set()  # of which those whose lease it holds (renewed)
        self._lost: set[str] = set()
        self._records = Records(db, batch=batch, worker=worker, refused=self._refused)
        self._closing: asyncio.Task[None] | None = None
        self._gate: PostgresGateState | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        batch: str,
        worker: str | None = None,
        lease: float = 120.0,
        pool_size: int = 8,
        timeout: float = 10.0,
        preload: bool = True,
    ) -> PostgresJournal:
        """Connect to ``url`` (``postgresql://user@host:port/db``), create or check the schema,
        and read ``batch``'s rows into the cache (unless ``preload=False``).

        ``worker`` names this process in claims (default ``host:pid:random``); ``lease``:
        seconds a claim lasts without renewal; ``timeout``: the bound on every wait for the
        database (``DatabaseUnavailableError`` past it)."""
        if not isinstance(batch, str) or not batch.strip() or len(batch) > 200:
            raise ConfigurationError(f"batch={batch!r}: must be a non-empty name (200 chars max)")
        if not lease > 0:
            raise ConfigurationError(f"lease={lease!r}: must be a positive number of seconds")
        name = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        db = await Database.open(url, pool_size=pool_size, timeout=timeout)
        journal = cls(db, batch=batch, worker=name, lease=lease)
        try:
            await db.fetch(
                "opening the batch",
                "INSERT INTO omnivid_budgets (batch) VALUES (%(batch)s) ON CONFLICT DO NOTHING",
                {"batch": batch},
            )
            if preload:
                await journal.refresh()
        except BaseException:
            await db.close()
            raise
        return journal

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<PostgresJournal {self._db.label} batch={self.batch!r} worker={self.worker!r}{state}>"
        )

    @property
    def db(self) -> Database:
        """The connection pool (shared with a :class:`PostgresGateState`, if wanted)."""
        return self._db

    @property
    def closed(self) -> bool:
        """True once closing started."""
        return self._closing is not None or self._db.closed

    @property
    def lost(self) -> frozenset[str]:
        """Keys this worker held whose claim another worker took (its writes were refused)."""
        return frozenset(self._lost)

    def gate_state(self) -> PostgresGateState:
        """The shared rate state of provider accounts, on this journal's pool (one per
        journal): what ``AsyncClient``'s gate uses when a batch runs on this journal."""
        if self._gate is None:
            self._gate = PostgresGateState(self._db)
        return self._gate

    def token(self, key: str | int) -> int | None:
        """The fencing token this worker holds for ``key``, or None."""
        return self._tokens.get(str(key))

    # -- reading -----------------------------------------------------------------------------
    def keys(self) -> set[str]:
        """Every key in the cache (the batch's rows when opened or refreshed, see module)."""
        return set(self._cache)

    def get(self, key: str | int) -> JournalEntry | None:
        """The cached entry for ``key`` (see module), or None."""
        return self._cache.get(str(key))

    def spending(self, provider: str) -> Spending:
        """The spend and open reservations of ``provider``'s entries in the cache (the
        protocol's, as the SQLite journal counts them; see module). The batch's budget shared
        by every worker is :meth:`budget`."""
        spent = reserved = 0.0
        for entry in self._cache.values():
            if entry.provider == provider:
                spent += entry.cost or 0.0
                if entry.state in OPEN_STATES:
                    reserved += entry.reserved or 0.0
        return Spending(spent=spent, reserved=reserved)

    # -- claims ------------------------------------------------------------------------------
    async def claim(
        self,
        key: str | int,
        request: VideoRequest,
        *,
        provider: str,
        fingerprint: str | None = None,
        request_json: str | None = None,
        ambiguous: bool = False,
    ) -> Claim:
        """Claim the job ``key`` (inserting it when new): see :class:`Claim` and the module.
        ``ambiguous=True`` also takes an ambiguous intent (to resubmit it, as asked)."""
        if fingerprint is None or request_json is None:
            fingerprint, request_json = request.fingerprint_and_json()
        jkey = str(key)
        params = {
            "batch": self.batch, "key": jkey, "fingerprint": fingerprint, "provider": provider,
            "model": request.model, "request": request_json, "worker": self.worker,
            "lease": self._interval, "ambiguous": ambiguous,
        }  # fmt: skip
        found = await self._db.fetch("claiming a job", CLAIM, params)
        if not found:  # inserted by another worker after this statement's snapshot
            found = await self._db.fetch("claiming a job", CLAIM, params)
        if not found:
            raise ConfigurationError(f"key {jkey}: its row vanished while claiming it")
        claimed, *columns = found[0]
        row = job_row(tuple(columns))
        self._cache[jkey] = row.entry
        if claimed:
            self._hold(jkey, row.token)
            return Claim(status="claimed", row=row)
        entry = row.entry
        if entry.fingerprint != fingerprint or entry.provider != provider:
            status: ClaimStatus = "conflict"
        elif entry.terminal:
            status = "done"
        elif row.live and row.worker != self.worker:
            status = "held"
        elif entry.state == "intent":
            status = "ambiguous"
        else:
            status = "held"
        return Claim(status=status, row=row)

    async def claim_next(
        self, limit: int = 1, *, provider: str | None = None, retry_not_submitted: bool = False
    ) -> list[Claim]:
        """Claim up to ``limit`` jobs nobody holds that need work, oldest first: ``queued``
        ones (to submit) and ``submitted`` ones (to poll), and with ``retry_not_submitted``
        those that never reached the provider; never an ambiguous or finished one."""
        states = ["queued", "submitted", *(["not_submitted"] if retry_not_submitted else [])]
        params = {
            "batch": self.batch, "states": states, "provider": provider, "limit": limit,
            "worker": self.worker, "lease": self._interval,
        }  # fmt: skip
        rows = [job_row(r) for r in await self._db.fetch("claiming jobs", CLAIM_NEXT, params)]
        for row in rows:
            self._cache[row.key] = row.entry
            self._hold(row.key, row.token)
        return [Claim(status="claimed", row=row) for row in rows]

    async def renew(self) -> set[str]:
        """Renew every lease this worker holds (one ``UPDATE``); the keys found lost (another
        worker claimed them since)."""
        # only the leases held before the statement: a claim answered while it runs is not in
        # its snapshot, and a lease released meanwhile is no longer this worker's to keep
        held = {key: self._tokens.get(key) for key in self._leased}
        rows = await self._db.fetch(
            "renewing leases",
            "UPDATE omnivid_jobs SET lease_until = now() + %(lease)s WHERE batch = %(batch)s "
            "AND worker = %(worker)s AND lease_until IS NOT NULL RETURNING key, token",
            {"batch": self.batch, "worker": self.worker, "lease": self._interval},
        )
        kept = {str(k): int(t) for k, t in rows}
        lost = {
            key
            for key, token in held.items()
            if key in self._leased and self._tokens.get(key) == token and kept.get(key) != token
        }
        for key in lost:
            self._lose(key, "renewal found another worker's claim")
        return lost

    async def heartbeat(self, interval: float | None = None) -> None:
        """Renew the leases every ``interval`` seconds (default a third of the lease) until
        cancelled; a database error ends it (raised: the worker should stop submitting)."""
        period = self.lease / 3 if interval is None else interval
        while True:
            await asyncio.sleep(period)
            await self.renew()

    async def release_claim(self, key: str | int) -> bool:
        """Give the job's lease up (its state stays); False if it was no longer held."""
        jkey = str(key)
        token = self._tokens.get(jkey)
        if token is None:
            return False
        rows = await self._db.fetch(
            "releasing a claim",
            f"UPDATE omnivid_jobs SET lease_until = NULL {WHERE} AND token = %(token)s "
            "RETURNING key",
            {"batch": self.batch, "key": jkey, "token": token},
        )
        self._leased.discard(jkey)
        return bool(rows)

    def _hold(self, key: str, token: int) -> None:
        self._tokens[key] = token
        self._leased.add(key)
        self._lost.discard(key)

    def _touch(self, key: str, *, request_json: str | None = None, **changes: Any) -> None:
        """This worker's write, in its cached entry (read-your-writes, see module)."""
        entry = self._cache.get(key)
        if entry is None:
            return
        if request_json is not None and changes.get("fingerprint") != entry.fingerprint:
            changes["request"] = json.loads(request_json)
        self._cache[key] = attrs.evolve(entry, updated_at=time.time(), **changes)

    def _lose(self, key: str, why: str) -> None:
        self._cache.pop(key, None)  # what this worker wrote there may not be the job's state
        self._tokens.pop(key, None)
        self._leased.discard(key)
        self._lost.add(key)
        log.warning("key %s: lease lost (%s); this worker leaves the job alone", key, why)

    def _refused(self, key: str) -> None:
        self._lose(key, "a record was refused")

    def _fence(self, key: str, params: dict[str, Any]) -> str:
        """The condition a write for ``key`` needs: this worker's token, or (none held) that
        no other worker holds the job."""
        token = self._tokens.get(key)
        params["worker"] = self.worker
        if token is None:
            return FREE
        params["token"] = token
        return "token = %(token)s"

    # -- the protocol's awaited writes -------------------------------------------------------
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
        """Commit the intent before the POST, pushing the lease to ``now() + lease``.

        Holding the job's claim: fenced by its token (:class:`LeaseLostError` if another
        worker claimed it since). Without one: claims it in the same statement (see module),
        False when it may not: another worker holds it or left it in ``intent`` or
        ``submitted``, it is finished, or (``new``) it is more than queued."""
        text = request_json or dumps(request.to_dict())
        params = {
            "batch": self.batch, "key": key, "fingerprint": fingerprint, "provider": provider,
            "model": request.model, "request": text,
            "run": run, "lease": self._interval, "worker": self.worker, "reserved": reserved,
        }  # fmt: skip
        token = self._tokens.get(key)
        if token is None:
            states = "j.state = 'queued'" if new else _UNCLAIMED
            sql = INTENT_CLAIM.format(states=states)
            rows = await self._db.fetch("recording an intent", sql, params)
            if not rows:
                return False
            row = job_row(rows[0])
            self._hold(key, row.token)
            self._cache[key] = row.entry
            return True
        params["token"] = token
        if not await self._db.fetch("recording an intent", INTENT_FENCED, params):
            self._lose(key, "refused the intent")
            raise LeaseLostError(key, "another worker claimed the job before its intent")
        self._leased.add(key)
        self._touch(
            key, request_json=text, fingerprint=fingerprint, provider=provider,
            model=request.model, state="intent", status=None, error=None, task=None, run=run,
            reserved=reserved,
        )  # fmt: skip
        return True

    async def write_submitted(
        self,
        key: str,
        task: Task,
        *,
        task_ids: list[str],
        attempts: int,
        reserved: float | None = None,
    ) -> None:
        """Commit the task id right after the POST, fenced (see module): when refused, the id
        is still appended to the row's ``task_ids``, then :class:`LeaseLostError`."""
        params = {
            "batch": self.batch, "key": key, "task_id": task.id, "task_ids": list(task_ids),
            "attempts": attempts, "status": task.status.value, "reserved": reserved,
        }  # fmt: skip
        sql = SUBMITTED.format(fence=self._fence(key, params))
        if await self._db.fetch("recording a task id", sql, params):
            changes: dict[str, Any] = {} if reserved is None else {"reserved": reserved}
            self._touch(
                key, state="submitted", task_id=task.id, task_ids=tuple(task_ids),
                attempts=attempts, status=task.status.value, error=None, **changes,
            )  # fmt: skip
            return
        note = f"task {task.id} submitted by {self.worker} after it lost the job's lease"
        await self._db.fetch(
            "recording an orphan task id",
            ORPHAN,
            {"batch": self.batch, "key": key, "task_id": task.id, "error": note},
        )
        self._lose(key, f"refused task id {task.id}, kept in task_ids")
        raise LeaseLostError(key, note)

    # -- the protocol's lazy records (see module and :mod:`._postgres_records`) ---------------
    def record_finished(
        self, key: str | int, task: Task, *, cost: float, body: str | None = None
    ) -> None:
        """Queue a terminal task and its cost (the SQLite journal's forms); a terminal one
        releases the lease."""
        jkey = str(key)
        if body is not None:
            form, blob = "body", body
        elif task.raw:
            form, blob = "provider", dumps(task.raw)
        else:
            form, blob = "omnivid", dumps(converter.unstructure(task))
        terminal = task.is_terminal
        error = f"{task.error.code}: {task.error.message}" if task.error else None
        state = task.status.value if terminal else "submitted"
        values = finished_values(
            state, task.id, task.status.value, cost, blob, form, error, terminal
        )
        self._queue("finished", jkey, values)
        if terminal:
            self._leased.discard(jkey)
        if jkey in self._cache:
            self._touch(
                jkey, state=state, task_id=task.id, status=task.status.value, cost=cost,
                task=json.loads(blob), task_form=form, error=error,
            )  # fmt: skip

    def record_error(self, key: str | int, message: str) -> None:
        """Queue an error note (the state stays)."""
        self._queue("error", str(key), {"error": message})
        self._touch(str(key), error=message)

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
        """Queue that the job never reached the provider (a rerun may submit it); releases
        the lease. Without a claim held it only changes a queued or not_submitted row."""
        jkey = str(key)
        values = {
            "fingerprint": fingerprint or request.fingerprint(), "provider": provider,
            "model": request.model, "request": dumps(request.to_dict()), "error": reason,
            "run": run,
        }  # fmt: skip
        self._queue("not_submitted", jkey, values)
        self._leased.discard(jkey)
        self._touch(jkey, state="not_submitted", error=reason, run=run)

    def record_download(self, key: str | int, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Queue the files a job's videos were saved to (replacing earlier ones)."""
        saved = [os.fspath(p) for p in paths]
        self._queue("downloads", str(key), downloads_values(saved))
        self._touch(str(key), downloads=tuple(Path(p) for p in saved))

    def _queue(self, kind: Kind, key: str, values: dict[str, Any]) -> None:
        if self.closed:
            raise ConfigurationError(f"{self!r} is closed")
        self._records.queue(kind, key, self._tokens.get(key), values)

    @property
    def write_error(self) -> BaseException | None:
        """Why the last background commit of the lazy records failed (None once one works)."""
        return self._records.error

    def flush(self) -> None:
        """Start committing the queued records (await :meth:`aflush` to wait for it)."""
        if len(self._records) and not self.closed:
            self._records.wake()

    async def aflush(self) -> None:
        """Commit the queued records now; a database error is raised (they stay queued)."""
        await self._records.drain()

    def close(self) -> None:
        """Start closing: commit the queued records, then close the pool (idempotent). Await
        :meth:`aclose` to wait for it; without a running event loop the queued records are
        lost (logged) and the pool is left to the garbage collector."""
        if self._closing is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if lost := self._records.drop():
                log.warning("%d journal records lost: closed without an event loop", lost)
            return
        self._closing = loop.create_task(self._shutdown())

    async def aclose(self) -> None:
        """Commit the queued records and close the pool (idempotent); a failure to commit is
        raised once the pool is closed."""
        self.close()
        if self._closing is not None:
            await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        try:
            await self._records.stop()
            await self._records.drain()
        finally:
            await self._db.close()

    async def __aenter__(self) -> PostgresJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
