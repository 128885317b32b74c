"""The PostgreSQL side's machinery: its tables, their version, the connection pool and the
errors, shared by :mod:`._postgres` (the journal) and :mod:`._postgres_gate` (the account rate
state).

Tables (every name starts with ``omnivid_``; one database may hold many batches)::

    omnivid_meta     name -> value; 'schema' holds the version of these tables
    omnivid_jobs     one row per (batch, key): the journal entry (the SQLite journal's columns)
                     (reserved included: the cost reserved with the intent) plus the claim:
                     worker, token (the fencing token), lease_until; and the job's part of
                     the batch's budget row: held (reserved there), charged (spent there)
    omnivid_budgets  one row per batch: spent and reserved over every worker and run
    omnivid_gates    one row per provider account: rate, next free slot, cooldown deadline,
                     adaptive state (JSON), version, slots booked (``sent``, schema 2),
                     answers other than 429 (``oks``) and the last storm (``storm_*``,
                     schema 3)

The schema is created on first use by whichever process comes first, inside one transaction
holding ``pg_advisory_xact_lock`` (so concurrent first users never race on ``CREATE``), with
the ``omnivid_meta`` row ``schema``. A process refuses tables of a version newer than it knows
(``ConfigurationError`` naming both); older versions are migrated under the same lock.

Every statement goes through :class:`Database`: a ``psycopg_pool.AsyncConnectionPool`` in
autocommit mode (one statement, one transaction, unless a method opens one), each wait bounded
by ``timeout``. A server that cannot be reached, goes away or stops answering raises
:class:`DatabaseUnavailableError` (one line naming the server, never the password); a missing
permission raises ``ConfigurationError``. Nothing falls back to local state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from ..errors import ConfigurationError, DatabaseUnavailableError
from ._base import Claim, ClaimStatus, JobRow, JournalEntry, LeaseLostError

__all__ = [
    "CLAIM",
    "CLAIM_NEXT",
    "FREE",
    "INTENT_CLAIM",
    "INTENT_FENCED",
    "ORPHAN",
    "ROW_COLUMNS",
    "SCHEMA_VERSION",
    "SUBMITTED",
    "TERMINAL",
    "WHERE",
    "Claim",
    "ClaimStatus",
    "Database",
    "DatabaseUnavailableError",
    "JobRow",
    "LeaseLostError",
    "describe_url",
]

log = logging.getLogger("omnivid")

SCHEMA_VERSION = 3
_LOCK = 0x6F6D6E6976696400  # pg_advisory_xact_lock key for schema changes ("omnivid\0")
_DDL = """
CREATE TABLE IF NOT EXISTS omnivid_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS omnivid_jobs (
    batch       text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    provider    text NOT NULL,
    model       text NOT NULL,
    request     text NOT NULL,
    state       text NOT NULL CHECK (state IN ('queued', 'intent', 'submitted', 'completed',
                                               'failed', 'cancelled', 'not_submitted')),
    task_id     text,
    task_ids    text[] NOT NULL DEFAULT '{}',
    attempts    integer NOT NULL DEFAULT 0,
    status      text,
    cost        double precision,
    task        text,
    task_form   text,
    error       text,
    downloads   text[] NOT NULL DEFAULT '{}',
    run         text,
    worker      text,
    token       bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    reserved    double precision,
    held        double precision NOT NULL DEFAULT 0,
    charged     double precision NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (batch, key)
);
CREATE INDEX IF NOT EXISTS omnivid_jobs_todo ON omnivid_jobs (batch, created_at, key)
    WHERE state IN ('queued', 'submitted');
CREATE INDEX IF NOT EXISTS omnivid_jobs_leases ON omnivid_jobs (batch, worker)
    WHERE lease_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS omnivid_budgets (
    batch      text PRIMARY KEY,
    spent      double precision NOT NULL DEFAULT 0,
    reserved   double precision NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS omnivid_gates (
    account      text PRIMARY KEY,
    rate         double precision CHECK (rate > 0),
    rate_set     boolean NOT NULL DEFAULT false,
    seen_at      timestamptz,
    slot         timestamptz,
    next_slot    timestamptz,
    closed_until timestamptz,
    adaptive     jsonb NOT NULL DEFAULT '{}',
    version      bigint NOT NULL DEFAULT 0,
    sent         bigint NOT NULL DEFAULT 0,
    oks          bigint NOT NULL DEFAULT 0,
    storm_at     timestamptz,
    storm_oks    bigint NOT NULL DEFAULT 0,
    storm_pause  double precision,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""
_MIGRATIONS: dict[int, str] = {  # version -> SQL bringing it to version + 1
    # 2: the account's slots booked so far (each worker scales what it saw to the account's)
    1: "ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS sent bigint NOT NULL DEFAULT 0",
    # 3: the account's answers other than 429 so far (what estimates the server's limit)
    # 3: the account's answers other than 429 so far, and its last storm (what estimates the
    # server's limit for every worker)
    2: """
ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS oks bigint NOT NULL DEFAULT 0;
ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS storm_at timestamptz;
ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS storm_oks bigint NOT NULL DEFAULT 0;
ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS storm_pause double precision;
ALTER TABLE omnivid_gates ADD COLUMN IF NOT EXISTS rate_set boolean NOT NULL DEFAULT false;
UPDATE omnivid_gates SET rate_set = version > 0
""",
}

# the columns a JobRow is read from, in order (times as unix seconds of the database's clock)
ROW_COLUMNS = (
    "key, fingerprint, provider, model, request, state, task_id, task_ids, attempts, status, "
    "cost, task, task_form, error, downloads, run, "
    "extract(epoch FROM created_at)::float8, extract(epoch FROM updated_at)::float8, "
    "worker, token, extract(epoch FROM lease_until)::float8, "
    "coalesce(lease_until > now(), false), reserved, held, charged"
)

# -- the statements the journal sends on omnivid_jobs (:mod:`._postgres`) ---------------------
FREE = "(lease_until IS NULL OR lease_until <= now() OR worker = %(worker)s)"
WHERE = "WHERE batch = %(batch)s AND key = %(key)s"
CLAIM = f"""
WITH c AS (
    INSERT INTO omnivid_jobs AS j (batch, key, fingerprint, provider, model, request, state,
                                   worker, token, lease_until)
    VALUES (%(batch)s, %(key)s, %(fingerprint)s, %(provider)s, %(model)s, %(request)s,
            'queued', %(worker)s, 1, now() + %(lease)s)
    ON CONFLICT (batch, key) DO UPDATE SET
        worker = excluded.worker, token = j.token + 1, lease_until = excluded.lease_until
    WHERE j.fingerprint = excluded.fingerprint AND j.provider = excluded.provider
      AND (j.lease_until IS NULL OR j.lease_until <= now() OR j.worker = excluded.worker)
      AND (j.state IN ('queued', 'not_submitted', 'submitted')
           OR (j.state = 'intent' AND %(ambiguous)s))
    RETURNING {ROW_COLUMNS}
)
SELECT true, * FROM c
UNION ALL
SELECT false, {ROW_COLUMNS} FROM omnivid_jobs
{WHERE} AND NOT EXISTS (SELECT 1 FROM c)
"""
CLAIM_NEXT = f"""
WITH picked AS (
    SELECT key AS k FROM omnivid_jobs
    WHERE batch = %(batch)s AND state = ANY(%(states)s)
      AND (lease_until IS NULL OR lease_until <= now())
      AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
    ORDER BY created_at, key
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE omnivid_jobs j SET worker = %(worker)s, token = j.token + 1,
    lease_until = now() + %(lease)s
FROM picked WHERE j.batch = %(batch)s AND j.key = picked.k
RETURNING {ROW_COLUMNS}
"""
INTENT_FENCED = (
    "UPDATE omnivid_jobs SET fingerprint = %(fingerprint)s, provider = %(provider)s, "
    "model = %(model)s, request = %(request)s, state = 'intent', status = NULL, error = NULL, "
    "task = NULL, run = %(run)s, reserved = %(reserved)s, updated_at = clock_timestamp(), "
    "lease_until = greatest(lease_until, now() + %(lease)s) "
    f"{WHERE} AND token = %(token)s RETURNING token"
)
INTENT_CLAIM = (
    "INSERT INTO omnivid_jobs AS j (batch, key, fingerprint, provider, model, request, state, "
    "run, reserved, worker, token, lease_until) VALUES (%(batch)s, %(key)s, %(fingerprint)s, "
    "%(provider)s, %(model)s, %(request)s, 'intent', %(run)s, %(reserved)s, %(worker)s, 1, "
    "now() + %(lease)s) ON CONFLICT (batch, key) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, provider = excluded.provider, model = excluded.model, "
    "request = excluded.request, state = 'intent', status = NULL, error = NULL, task = NULL, "
    "run = excluded.run, reserved = excluded.reserved, worker = excluded.worker, "
    "token = j.token + 1, "
    "lease_until = excluded.lease_until, updated_at = clock_timestamp() "
    "WHERE (j.lease_until IS NULL OR j.lease_until <= now() OR j.worker = excluded.worker) "
    "AND {states} RETURNING " + ROW_COLUMNS
)
SUBMITTED = (
    "UPDATE omnivid_jobs SET state = 'submitted', task_id = %(task_id)s, "
    "task_ids = %(task_ids)s, attempts = %(attempts)s, status = %(status)s, error = NULL, "
    "reserved = coalesce(%(reserved)s, reserved), "
    f"updated_at = clock_timestamp() {WHERE} AND {{fence}} RETURNING token"
)
ORPHAN = (
    "UPDATE omnivid_jobs SET task_ids = CASE WHEN %(task_id)s = ANY(task_ids) THEN task_ids "
    "ELSE array_append(task_ids, %(task_id)s) END, error = %(error)s, "
    f"updated_at = clock_timestamp() {WHERE}"
)
TERMINAL = "('completed', 'failed', 'cancelled')"


dumps: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact JSON, as the SQLite journal writes it."""


def job_row(row: tuple[Any, ...]) -> JobRow:
    """A :class:`JobRow` from the columns of ``ROW_COLUMNS``."""
    (key, fingerprint, provider, model, request, state, task_id, task_ids, attempts, status,
     cost, task, task_form, error, downloads, run, created_at, updated_at,
     worker, token, lease_until, live, reserved, held, charged) = row  # fmt: skip
    entry = JournalEntry(
        key=key,
        fingerprint=fingerprint,
        provider=provider,
        model=model,
        request=json.loads(request),
        state="not_submitted" if state == "queued" else state,
        task_id=task_id,
        task_ids=tuple(task_ids),
        attempts=int(attempts),
        status=status,
        cost=cost,
        task=json.loads(task) if task else None,
        task_form=task_form,
        error=error,
        downloads=tuple(Path(p) for p in downloads),
        run=run,
        created_at=float(created_at),
        updated_at=float(updated_at),
        reserved=reserved,
    )
    return JobRow(
        entry=entry,
        worker=worker,
        token=int(token),
        lease_until=lease_until,
        live=bool(live),
        queued=state == "queued",
        held=float(held),
        charged=float(charged),
    )


def describe_url(url: str) -> str:
    """``postgresql://user@host:port/db`` without the password (for messages); raises
    ``ConfigurationError`` for a malformed URL."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"malformed PostgreSQL URL: {_first_line(exc)}") from None
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{parts.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class Database:
    """A connection pool and the error handling every statement goes through (see module).

    ``round_trips`` counts the requests sent to the server and waited for (for measurements).
    """

    def __init__(
        self, pool: psycopg_pool.AsyncConnectionPool[Any], label: str, timeout: float
    ) -> None:
        self.pool = pool
        self.label = label
        self.timeout = timeout
        self.round_trips = 0

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 8,
        timeout: float = 10.0,
        application_name: str = "omnivid",
    ) -> Database:
        """Connect (checking the server and creating or checking the schema first), then open
        a pool of up to ``pool_size`` connections."""
        label = describe_url(url)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": application_name,
            "connect_timeout": max(2, int(timeout)),
        }
        try:
            async with asyncio.timeout(timeout):
                conn = await psycopg.AsyncConnection.connect(url, **kwargs)
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"cannot reach the database {label}: no answer within {timeout:g} s"
            ) from None
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to the database {label}: {_first_line(exc)}"
            ) from None
        db_label = label
        try:
            async with conn:
                async with asyncio.timeout(timeout):
                    await ensure_schema(conn, db_label)
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"the database {label} did not answer within {timeout:g} s"
            ) from None
        except pg_errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"the database {label} refused omnivid's tables: {_first_line(exc)}"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(f"the database {label}: {_first_line(exc)}") from None
        pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            reconnect_timeout=timeout,
            name=application_name,
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout:
            await pool.close()
            raise DatabaseUnavailableError(
                f"cannot open connections to the database {label} within {timeout:g} s"
            ) from None
        return cls(pool, label, timeout)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.pool.closed

    async def close(self) -> None:
        """Close every connection (idempotent)."""
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection for ``what`` (named in errors), the whole use bounded by
        ``timeout``; database errors become :class:`DatabaseUnavailableError` or
        ``ConfigurationError`` (see module)."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.connection(timeout=self.timeout) as conn:
                    yield conn
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"{what}: the database {self.label} did not answer within {self.timeout:g} s"
            ) from None
        except psycopg_pool.PoolClosed:
            raise DatabaseUnavailableError(f"{what}: the connection pool is closed") from None
        except psycopg_pool.PoolTimeout:
            raise DatabaseUnavailableError(
                f"{what}: no connection to the database {self.label} within {self.timeout:g} s"
            ) from None
        except pg_errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"{what}: the database {self.label} refused: {_first_line(exc)}"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"{what}: lost the database {self.label}: {_first_line(exc)}"
            ) from None

    async def fetch(self, what: str, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute one statement (its own transaction) and return its rows."""
        async with self.connection(what) as conn:
            cur = await conn.execute(sql, params)
            self.round_trips += 1
            result = cur.pgresult  # (cur.description would build every column's description)
            if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                return []
            return await cur.fetchall()


async def ensure_schema(conn: psycopg.AsyncConnection[Any], label: str) -> None:
    """Create omnivid's tables (first use), migrate older ones, or refuse newer ones."""
    version = await _version(conn)
    if version == SCHEMA_VERSION:
        return  # the common case: no lock taken
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        version = await _version(conn)  # another process may have done it meanwhile
        if version is None:
            await conn.execute(_DDL)
            await conn.execute(
                "INSERT INTO omnivid_meta VALUES ('schema', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            log.info("created omnivid's tables (schema %d) in %s", SCHEMA_VERSION, label)
            return
        _refuse_newer(version, label)
        while version < SCHEMA_VERSION:
            await conn.execute(_MIGRATIONS[version])
            version += 1
        await conn.execute(
            "UPDATE omnivid_meta SET value = %s WHERE name = 'schema'", (str(version),)
        )


async def _version(conn: psycopg.AsyncConnection[Any]) -> int | None:
    cur = await conn.execute("SELECT to_regclass('omnivid_meta') IS NOT NULL")
    exists = await cur.fetchone()
    if not (exists and exists[0]):
        return None
    cur = await conn.execute("SELECT value FROM omnivid_meta WHERE name = 'schema'")
    row = await cur.fetchone()
    value = row[0] if row else None
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(
            f"omnivid_meta says schema version {value!r}, not a number: not omnivid's tables"
        ) from None


def _refuse_newer(version: int, label: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the database {label} has omnivid schema version {version}; this omnivid knows "
            f"version {SCHEMA_VERSION} at most: upgrade omnivid"
        )
