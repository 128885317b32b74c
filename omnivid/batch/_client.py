"""What a batch needs from a client: :class:`BatchClient`.

The batch engine never imports :class:`~omnivid.AsyncClient` at run time; it is handed one and
uses only what this protocol names (the account's provider adapter, transport and gate, the
polling and retry policies, the callback receiver), so the layers stay one-way:
batch → client → http → providers → models.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import anyio.abc

from .._http.gate import AccountGate
from .._http.retry import RetryPolicy
from .._http.transport import Transport
from .._models import Task, VideoRequest
from .._polling import PollPolicy
from ..providers import Provider

__all__ = ["BatchClient", "Wakes"]


class Wakes(Protocol):
    """A callback receiver, as far as a batch is concerned."""

    def take_wake(self, task_id: str) -> bool:
        """Whether a callback for ``task_id`` arrived (and forget it)."""
        ...


class BatchClient(Protocol):
    """The client of one provider account, as a batch uses it."""

    provider: Provider
    time_scale: float
    gate: AccountGate
    poll: PollPolicy
    retry: RetryPolicy
    _nudge_listeners: list[Callable[[str], bool]]
    _submitted_at: OrderedDict[str, float]
    _services: anyio.abc.TaskGroup | None  # hosts `async for` over a batch

    @property
    def account(self) -> str:
        """The account's name in shared state (never its key)."""
        ...

    @property
    def callbacks(self) -> Wakes | None:
        """The callback receiver, if any."""
        ...

    @property
    def transport(self) -> Transport:
        """The HTTP transport (opened on first use)."""
        ...

    @property
    def _transport(self) -> Transport | None:
        """The transport if it is open."""
        ...

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        """The validated request body for ``request``."""
        ...

    async def submit(self, request: VideoRequest, *, body: dict[str, Any] | None = None) -> Task:
        """Submit ``request``; its task."""
        ...
