"""An account's rate limit shared by every worker, kept in PostgreSQL (``omnivid_gates``).

One row per provider account (named by :func:`account_id`, never by its API key) holds::

    rate          requests per second for the whole account (NULL: no limit)
    next_slot     the earliest time the next request may go (GCRA: the theoretical arrival
                  time; slots are 1 / rate apart, burst 1, as in AccountGate)
    closed_until  the cooldown deadline a 429 set: nobody sends before it
    adaptive      the adaptive limiter's state, JSON, for the worker that cuts or raises the rate
    rate_set      a worker set the rate (:meth:`PostgresGateState.set_rate`): a booking no
                  longer seeds it (NULL is then "no limit", not "not set yet")
    version       incremented by every change of rate or cooldown (compare-and-set)
    sent          slots booked so far, by every worker
    oks           answers other than 429 so far, by every worker, each reported with the
                  worker's next booking (a slot booked is not a request the server accepted)
    storm_at      the account's last storm: when its first 429 closed the open account (or
    storm_oks     when the account was booked again after IDLE seconds unused: an anchor, its
    storm_pause   storm_pause NULL), ``oks`` then, and the seconds it closed the account for

The **storm** (:meth:`PostgresGateState.storm`, a 429 seen by one worker; its closing alone:
:meth:`~PostgresGateState.close_until`) closes the account, and tells whether this 429 began a
new storm of the *account*: the account was open and the request was sent after the last
storm began. Only then it answers what the account's limit is estimated from, every worker's:
the answers other than 429 since the previous storm (or anchor), the seconds since, and that
storm's pause, all read under the row's lock and timed by the database.

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

__all__ = ["Booking", "GateState", "PostgresGateState", "Storm", "account_id"]

IDLE = 5.0  # seconds unbooked after which the account's next booking anchors a new estimate

_NOW = "(SELECT clock_timestamp() AS t) c"
_ACQUIRE = f"""
UPDATE omnivid_gates g SET (rate, seen_at, slot, next_slot, sent, oks, storm_at, storm_oks,
                            storm_pause) = (
    SELECT r.rate, c.t, CASE WHEN k.closed THEN g.slot ELSE s.slot END,
           CASE WHEN k.closed OR r.rate IS NULL THEN g.next_slot
                ELSE s.slot + make_interval(secs => 1.0 / r.rate) END,
           g.sent + CASE WHEN k.closed THEN 0 ELSE 1 END, g.oks + %(oks)s::int8,
           CASE WHEN i.idle THEN c.t ELSE g.storm_at END,
           CASE WHEN i.idle THEN g.oks + %(oks)s::int8 ELSE g.storm_oks END,
           CASE WHEN i.idle THEN NULL ELSE g.storm_pause END
    FROM {_NOW},
         LATERAL (SELECT CASE WHEN g.rate_set THEN g.rate
                              ELSE coalesce(g.rate, %(rate)s::float8) END AS rate) r,
         LATERAL (SELECT greatest(c.t, CASE WHEN r.rate IS NULL THEN NULL ELSE g.next_slot END,
                                  g.closed_until) AS slot) s,
         LATERAL (SELECT g.seen_at IS NULL OR c.t - g.seen_at > make_interval(secs => {IDLE})
                  AS idle) i,
         LATERAL (SELECT {{closed}} AS closed) k
)
WHERE account = %(account)s
RETURNING extract(epoch FROM greatest(slot, closed_until) - seen_at)::float8{{more}}
"""
_STORM = f"""
WITH old AS (
    SELECT g.account, g.oks + %(oks)s::int8 - g.storm_oks AS oks, g.storm_pause AS pause, c.t,
           extract(epoch FROM c.t - g.storm_at)::float8 AS span,
           greatest(g.closed_until, c.t + make_interval(secs => %(seconds)s)) AS deadline,
           (g.closed_until IS NULL OR g.closed_until <= c.t)
           AND (g.storm_pause IS NULL OR %(sent_ago)s::float8 IS NULL
                OR c.t - make_interval(secs => %(sent_ago)s::float8) >= g.storm_at) AS new
    FROM omnivid_gates g, {_NOW}
    WHERE g.account = %(account)s
    FOR UPDATE OF g
)
UPDATE omnivid_gates g SET
    closed_until = old.deadline, next_slot = greatest(g.next_slot, old.deadline),
    version = g.version + 1, updated_at = old.t, oks = g.oks + %(oks)s::int8,
    storm_at = CASE WHEN old.new THEN old.t ELSE g.storm_at END,
    storm_oks = CASE WHEN old.new THEN g.oks + %(oks)s::int8 ELSE g.storm_oks END,
    storm_pause = CASE WHEN old.new THEN extract(epoch FROM old.deadline - old.t)::float8
                       ELSE g.storm_pause END
FROM old WHERE g.account = old.account
RETURNING extract(epoch FROM old.deadline - old.t)::float8, old.new, old.oks, old.span, old.pause,
          old.t
"""
_REPORT = "UPDATE omnivid_gates SET oks = oks + %(oks)s::int8 WHERE account = %(account)s"
_REFINE = """
UPDATE omnivid_gates g SET storm_oks = g.oks
FROM (SELECT storm_oks FROM omnivid_gates WHERE account = %(account)s FOR UPDATE) o
WHERE g.account = %(account)s AND g.storm_at = %(at)s
RETURNING g.oks - o.storm_oks
"""
# a booking while the account is closed takes no slot: it answers the wait until the reopening
# (closed: the caller books again then, at the rate set meanwhile)
_BOOK = _ACQUIRE.format(
    closed="coalesce(g.closed_until > c.t, false)",
    more=", coalesce(closed_until > seen_at, false), rate, version, sent, oks, adaptive",
)
_ACQUIRE = _ACQUIRE.format(closed="false", more="")
_SET_RATE = """
INSERT INTO omnivid_gates AS g (account, rate, rate_set, adaptive)
VALUES (%(account)s, %(rate)s, true, coalesce(%(adaptive)s::jsonb, '{}'))
ON CONFLICT (account) DO UPDATE SET
    rate = excluded.rate, rate_set = true, adaptive = coalesce(%(adaptive)s::jsonb, g.adaptive),
    version = g.version + 1, updated_at = clock_timestamp()
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
class Storm:
    """A 429 reported by :meth:`PostgresGateState.storm`: ``closed_for`` seconds until the
    account reopens; ``new``: it began a storm of the account. Then (else 0 / None): ``oks``,
    the account's answers other than 429 since the previous storm or anchor, ``span`` the
    seconds since, and ``pause`` the seconds that storm closed the account for (None: an
    anchor, when the account was open and its bucket full)."""

    closed_for: float
    new: bool
    oks: int = 0
    span: float | None = None
    pause: float | None = None
    at: object = None  # (new) the storm's start, for refine()


@frozen(kw_only=True)
class Booking:
    """A send slot booked by :meth:`PostgresGateState.book`: ``wait`` seconds until it (or,
    ``closed``: the account is closed and no slot was taken: the seconds until it reopens); the
    account's shared ``rate`` (None: no limit), limiter state (``adaptive``) and ``version``
    as the booking left them; ``sent``: slots booked so far, and ``oks``: answers other than
    429 reported so far, by every worker."""

    wait: float
    closed: bool
    rate: float | None
    version: int
    sent: int
    oks: int
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

        The spacing is the account's shared rate; ``rate`` seeds it while it has none and
        nobody set it (:meth:`set_rate`: a rate set to None, no limit, is not seeded again).
        None: no limit, only the cooldown is waited for. One round trip."""
        _check_rate(rate)
        params = {"rate": rate, "oks": 0}
        row = await self._row("booking a send slot", _ACQUIRE, account, params)
        return max(0.0, float(row[0]))

    async def book(self, account: str, rate: float | None = None, oks: int = 0) -> Booking:
        """:meth:`acquire`, answering also the row as the booking left it (one round trip).

        ``oks``: the caller's answers other than 429 since its last booking (added to the
        account's count)."""
        _check_rate(rate)
        if oks < 0:
            raise ValueError(f"oks={oks!r}: must be a count of answers (0 or more)")
        params: dict[str, Any] = {"rate": rate, "oks": oks}
        row = await self._row("booking a send slot", _BOOK, account, params)
        wait, closed, shared, version, sent, count, adaptive = row
        return Booking(
            wait=max(0.0, float(wait)),
            closed=bool(closed),
            rate=shared,
            version=int(version),
            sent=int(sent),
            oks=int(count),
            adaptive=dict(adaptive or {}),
        )

    async def close_until(self, account: str, seconds: float) -> float:
        """A 429: close the account for ``seconds`` from now (database time) for every worker,
        unless it is closed longer already; every later slot comes after. Returns the seconds
        until it reopens."""
        return (await self.storm(account, seconds)).closed_for

    async def storm(
        self, account: str, seconds: float, sent_ago: float | None = None, oks: int = 0
    ) -> Storm:
        """A 429: close the account for ``seconds`` from now (database time) for every
        worker, unless it is closed longer already (every later slot comes after), and tell
        whether it began a new storm of the account (``sent_ago``: the seconds since its
        request was sent; a request sent before the last storm began is part of it). ``oks``:
        the caller's answers other than 429 not yet reported (added first, as :meth:`book`
        does). One round trip."""
        if not seconds >= 0:
            raise ValueError(f"seconds={seconds!r}: must be a non-negative number")
        if sent_ago is not None and not sent_ago >= 0:
            raise ValueError(f"sent_ago={sent_ago!r}: must be a non-negative number or None")
        if oks < 0:
            raise ValueError(f"oks={oks!r}: must be a count of answers (0 or more)")
        params = {"seconds": seconds, "sent_ago": sent_ago, "oks": oks}
        closed_for, new, count, span, pause, at = await self._row(
            "closing the gate", _STORM, account, params
        )
        if not new:
            return Storm(closed_for=max(0.0, float(closed_for)), new=False)
        return Storm(
            closed_for=max(0.0, float(closed_for)),
            new=True,
            oks=int(count),
            span=None if span is None else float(span),
            pause=pause,
            at=at,
        )

    async def refine(self, account: str, at: object) -> int | None:
        """The answers other than 429 reported since the storm that began ``at``
        (:attr:`Storm.at`): late reports of requests sent before it. They count for that storm,
        whose count now ends here. None if another storm began since. One round trip."""
        rows = await self.db.fetch("reading the storm", _REFINE, {"account": account, "at": at})
        return int(rows[0][0]) if rows else None

    async def report(self, account: str, oks: int) -> None:
        """Add ``oks`` answers other than 429 to the account's count (as a booking does),
        without booking. One round trip."""
        if oks < 0:
            raise ValueError(f"oks={oks!r}: must be a count of answers (0 or more)")
        await self.db.fetch("reporting answers", _REPORT, {"account": account, "oks": oks})

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

    async def _row(
        self, what: str, sql: str, account: str, params: dict[str, Any]
    ) -> tuple[Any, ...]:
        """The row ``sql`` answers for the account's row (created on its first use here)."""
        params["account"] = account
        while True:
            if account not in self._known:  # its first use here: make sure the row exists
                await self.db.fetch(what, _CREATE, {"account": account})
                self._known.add(account)
            rows = await self.db.fetch(what, sql, params)
            if rows:
                return rows[0]
            self._known.discard(account)  # the row was deleted meanwhile


def _check_rate(rate: float | None) -> None:
    if rate is not None and not rate > 0:
        raise ValueError(f"rate={rate!r}: must be a positive number of requests/s or None")
