"""An account's rate limit shared by every worker, kept in PostgreSQL (``omnivid_gates``).

One row per provider account (named by :func:`account_id`, never by its API key) holds::

    rate          requests per second for the whole account (NULL: no limit)
    next_slot     the earliest time the next request may go (GCRA: the theoretical arrival
                  time; slots are 1 / rate apart, burst 1, as in AccountGate)
    closed_until  the cooldown deadline a 429 set: nobody sends before it
    adaptive      the adaptive limiter's state, JSON, for the worker that cuts or raises the rate
    version       incremented by every change of rate or cooldown (compare-and-set)
    sent          slots booked so far, by every worker (each scales what it saw by it)

Every time is the **database's** (``clock_timestamp()``), so the hosts' clocks never matter:
each worker only sleeps the *duration* the database returns.

:meth:`PostgresGateState.acquire` books a slot with **one** ``UPDATE ... RETURNING``, run
under the row's lock: ``slot = max(db_now, next_slot, closed_until)``, ``next_slot = slot +
1 / rate``, and returns ``slot - db_now``, the seconds the caller must wait before sending.
:meth:`~PostgresGateState.close_until` (a 429 seen by one worker) moves the deadline (never
earlier) and every later booking after it, so the pause holds for all. A slot booked before
another worker's 429 is not recalled: a caller that waited long re-reads
:meth:`~PostgresGateState.state` (``closed_for``) before sending. :meth:`~PostgresGateState.book`
is the same booking, answering also the row's rate, limiter state, version and slot count
(what ``omnivid._http.gate.AccountGate`` shares through it: ``SharedGate``).

If the database cannot be reached, every method raises ``DatabaseUnavailableError``: callers
stop sending; there is no per-process fallback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from psycopg.types.json import Jsonb

from ._postgres_schema import Database

__all__ = ["Booking", "GateState", "PostgresGateState", "account_id"]

_NOW = "(SELECT clock_timestamp() AS t) c"
_ACQUIRE = f"""
UPDATE omnivid_gates g SET (rate, seen_at, slot, next_slot, sent) = (
    SELECT r.rate, c.t, s.slot,
           CASE WHEN r.rate IS NULL THEN g.next_slot
                ELSE s.slot + make_interval(secs => 1.0 / r.rate) END,
           g.sent + 1
    FROM {_NOW},
         LATERAL (SELECT coalesce(g.rate, %(rate)s::float8) AS rate) r,
         LATERAL (SELECT greatest(c.t, CASE WHEN r.rate IS NULL THEN NULL ELSE g.next_slot END,
                                  g.closed_until) AS slot) s
)
WHERE account = %(account)s
RETURNING extract(epoch FROM slot - seen_at)::float8{{more}}
"""
_BOOK = _ACQUIRE.format(more=", rate, version, sent, adaptive")
_ACQUIRE = _ACQUIRE.format(more="")
_CLOSE = f"""
UPDATE omnivid_gates g SET (closed_until, next_slot, version, updated_at) = (
    SELECT d.deadline, greatest(g.next_slot, d.deadline), g.version + 1, c.t
    FROM {_NOW},
         LATERAL (SELECT greatest(g.closed_until, c.t + make_interval(secs => %(seconds)s))
                  AS deadline) d
)
WHERE account = %(account)s
RETURNING extract(epoch FROM closed_until - updated_at)::float8
"""
_SET_RATE = """
INSERT INTO omnivid_gates AS g (account, rate, adaptive)
VALUES (%(account)s, %(rate)s, coalesce(%(adaptive)s::jsonb, '{}'))
ON CONFLICT (account) DO UPDATE SET
    rate = excluded.rate, adaptive = coalesce(%(adaptive)s::jsonb, g.adaptive),
    next_slot = least(g.next_slot, clock_timestamp()), version = g.version + 1,
    updated_at = clock_timestamp()
WHERE %(expect)s::int8 IS NULL OR g.version = %(expect)s::int8
RETURNING version
"""
_STATE = """
SELECT rate, extract(epoch FROM closed_until)::float8,
       greatest(0, extract(epoch FROM closed_until - c.t))::float8,
       greatest(0, extract(epoch FROM next_slot - c.t))::float8,
       adaptive, version, extract(epoch FROM c.t)::float8
FROM (SELECT clock_timestamp() AS t) c LEFT JOIN omnivid_gates ON account = %(account)s
"""
_CREATE = "INSERT INTO omnivid_gates (account) VALUES (%(account)s) ON CONFLICT DO NOTHING"


def account_id(provider: str, base_url: str, api_key: str) -> str:
    """A stable name for a provider account that does not reveal its key:
    ``provider base_url sha256(key)[:16]``."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{provider} {base_url.rstrip('/')} {digest}"


@frozen(kw_only=True)
class GateState:
    """An account's shared limiter state, read at database time ``now`` (unix seconds).

    ``closed_for`` and ``next_slot_in``: seconds from ``now`` until the cooldown ends and
    until the next free slot (0 when past); ``closed_until``: the deadline (unix seconds, the
    database's clock) or None; ``version``: for :meth:`PostgresGateState.set_rate`'s
    ``expect``."""

    account: str
    rate: float | None
    closed_until: float | None
    closed_for: float
    next_slot_in: float
    adaptive: Mapping[str, Any]
    version: int
    now: float


@frozen(kw_only=True)
class Booking:
    """A send slot booked by :meth:`PostgresGateState.book`: ``wait`` seconds until it; the
    account's shared ``rate`` (None: no limit), limiter state (``adaptive``) and ``version``
    as the booking left them, and ``sent``: slots booked so far, by every worker."""

    wait: float
    rate: float | None
    version: int
    sent: int
    adaptive: Mapping[str, Any]


class PostgresGateState:
    """The shared rate state of provider accounts (see the module docstring).

    Build it on a journal's pool (``PostgresGateState(journal.db)``) or open its own with
    :meth:`open`; safe to share between tasks."""

    def __init__(self, db: Database, *, owned: bool = False) -> None:
        self.db = db
        self._owned = owned
        self._known: set[str] = set()  # accounts whose row exists

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 4, timeout: float = 5.0) -> PostgresGateState:
        """Connect to ``url`` with a pool of its own (created schema included)."""
        db = await Database.open(url, pool_size=pool_size, timeout=timeout)
        return cls(db, owned=True)

    async def aclose(self) -> None:
        """Close the pool if :meth:`open` made it."""
        if self._owned:
            await self.db.close()

    async def acquire(self, account: str, rate: float | None = None) -> float:
        """Book the account's next send slot; the seconds to wait before sending (0: now).

        The spacing is the account's shared rate; ``rate`` seeds it when the account has none
        (None: no limit, only the cooldown is waited for). One round trip."""
        _check_rate(rate)
        return await self._update("booking a send slot", _ACQUIRE, account, {"rate": rate})

    async def book(self, account: str, rate: float | None = None) -> Booking:
        """:meth:`acquire`, answering also the row as the booking left it (one round trip)."""
        _check_rate(rate)
        params: dict[str, Any] = {"rate": rate, "account": account}
        if account not in self._known:
            await self.db.fetch("booking a send slot", _CREATE, {"account": account})
            self._known.add(account)
        rows = await self.db.fetch("booking a send slot", _BOOK, params)
        if not rows:  # the row was deleted meanwhile
            self._known.discard(account)
            return await self.book(account, rate)
        wait, shared, version, sent, adaptive = rows[0]
        return Booking(
            wait=max(0.0, float(wait)),
            rate=shared,
            version=int(version),
            sent=int(sent),
            adaptive=dict(adaptive or {}),
        )

    async def close_until(self, account: str, seconds: float) -> float:
        """A 429: close the account for ``seconds`` from now (database time) for every worker,
        unless it is closed longer already; every later slot comes after. Returns the seconds
        until it reopens."""
        if not seconds >= 0:
            raise ValueError(f"seconds={seconds!r}: must be a non-negative number")
        return await self._update("closing the gate", _CLOSE, account, {"seconds": seconds})

    async def state(self, account: str) -> GateState:
        """The account's limiter state now (defaults when it has no row yet)."""
        rows = await self.db.fetch("reading the gate", _STATE, {"account": account})
        rate, until, closed_for, slot_in, adaptive, version, now = rows[0]
        return GateState(
            account=account,
            rate=rate,
            closed_until=until,
            closed_for=closed_for or 0.0,
            next_slot_in=slot_in or 0.0,
            adaptive=dict(adaptive or {}),
            version=int(version or 0),
            now=now,
        )

    async def set_rate(
        self,
        account: str,
        rate: float | None,
        *,
        adaptive: Mapping[str, Any] | None = None,
        expect: int | None = None,
    ) -> bool:
        """Set the account's shared rate (None: no limit) and, if given, its adaptive state.

        ``expect``: only if the row's ``version`` is still this one (compare-and-set; read it
        with :meth:`state`); False when another worker changed it first."""
        _check_rate(rate)
        rows = await self.db.fetch(
            "setting the rate",
            _SET_RATE,
            {
                "account": account,
                "rate": rate,
                "adaptive": None if adaptive is None else Jsonb(dict(adaptive)),
                "expect": expect,
            },
        )
        self._known.add(account)
        return bool(rows)

    async def _update(self, what: str, sql: str, account: str, params: dict[str, Any]) -> float:
        params["account"] = account
        if account not in self._known:  # its first use here: make sure the row exists
            await self.db.fetch(what, _CREATE, {"account": account})
            self._known.add(account)
        rows = await self.db.fetch(what, sql, params)
        if not rows:  # the row was deleted meanwhile
            self._known.discard(account)
            return await self._update(what, sql, account, params)
        return max(0.0, float(rows[0][0]))


def _check_rate(rate: float | None) -> None:
    if rate is not None and not rate > 0:
        raise ValueError(f"rate={rate!r}: must be a positive number of requests/s or None")
