"""Where a callback receiver keeps its per-task token digests.

A record holds ``sha256(token)`` (hex), never the token itself, so a dump of the store cannot
be replayed as callbacks. Records expire ``ttl`` seconds (wall clock) after they are written.

:class:`MemoryTokenStore` keeps them in this process. A deployment with several processes
behind a load balancer either routes callbacks to the process that submitted the task
(sticky routing) or implements :class:`TokenStore` over a shared database (Redis, SQL); then
any process can verify a callback, but only the submitting process can wake its waiters (the
others' fallback polls find the result).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
from attrs import frozen

__all__ = ["MemoryTokenStore", "TokenRecord", "TokenStore"]


@frozen
class TokenRecord:
    """The digest of one task's callback token, when it was bound, and when (if ever) a
    callback for it was confirmed by reading the task back."""

    digest: str = attrs.field(repr=False)
    created_at: float
    confirmed_at: float | None = None


@runtime_checkable
class TokenStore(Protocol):
    """Storage of token records by task id. Implementations must be safe to call from
    concurrent tasks; ``confirm`` is idempotent."""

    async def put(self, task_id: str, record: TokenRecord) -> None:
        """Store (or replace) the record of ``task_id``."""

    async def get(self, task_id: str) -> TokenRecord | None:
        """The record of ``task_id``, or None when unknown or expired."""

    async def confirm(self, task_id: str, at: float) -> None:
        """Mark the record of ``task_id`` confirmed at wall time ``at`` (no-op when absent)."""

    async def discard(self, task_id: str) -> None:
        """Forget ``task_id`` (no-op when absent)."""


class MemoryTokenStore:
    """An in-process :class:`TokenStore`: records live ``ttl`` seconds (default 48 h, longer
    than any task plus the provider's callback retries); beyond ``max_entries`` the oldest are
    dropped first (their callbacks are then refused and the fallback poll finds the result)."""

    def __init__(
        self,
        *,
        ttl: float = 48 * 3600.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._records: OrderedDict[str, TokenRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<MemoryTokenStore {len(self._records)} record(s)>"

    def _prune(self) -> None:
        horizon = self._clock() - self.ttl
        while self._records:
            task_id, record = next(iter(self._records.items()))
            if record.created_at >= horizon and len(self._records) <= self.max_entries:
                break
            del self._records[task_id]

    async def put(self, task_id: str, record: TokenRecord) -> None:
        self._records.pop(task_id, None)
        self._records[task_id] = record
        self._prune()

    async def get(self, task_id: str) -> TokenRecord | None:
        record = self._records.get(task_id)
        if record is None or record.created_at < self._clock() - self.ttl:
            return None
        return record

    async def confirm(self, task_id: str, at: float) -> None:
        record = self._records.get(task_id)
        if record is not None and record.confirmed_at is None:
            self._records[task_id] = attrs.evolve(record, confirmed_at=at)

    async def discard(self, task_id: str) -> None:
        self._records.pop(task_id, None)
