"""The public batch objects: :class:`MapRun` (``client.map``) and :class:`Batch`
(``client.open_batch``). Both run an :class:`~omnivid.batch._engine.Engine` and stream
:class:`~omnivid.Outcome` s in completion order.

Two ways to consume them:

* ``async with client.map(...) as outcomes: async for outcome in outcomes: ...`` (preferred):
  the batch lives inside the block; leaving it early, by ``break``, an exception or a
  cancellation, cancels what is left cleanly and reports the tasks left running
  (``outcomes.abandoned``).
* ``async for outcome in client.map(...)``: the batch runs under the client (so the client
  must be open); dropping the iterator (``break``) cancels it, and closing the client cancels
  any batch still running.
"""

from __future__ import annotations

import abc
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from .._aio.tasks import close_task_group, open_task_group
from .._models import VideoRequest
from ..errors import ConfigurationError, ValidationError
from ._engine import Engine
from ._job import BatchOptions
from ._outcome import BatchStats, Event, Outcome

if TYPE_CHECKING:
    from ._client import BatchClient

__all__ = ["Batch", "BatchInput", "BatchItem", "MapRun"]

BatchItem = VideoRequest | tuple[Hashable, VideoRequest]
"""A request (its key is then its index in the input) or a ``(key, request)`` pair."""
BatchInput = Iterable[BatchItem] | AsyncIterable[BatchItem]


class _BatchBase(abc.ABC):
    """What ``MapRun`` and ``Batch`` share: lifecycle, iteration, statistics, events."""

    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        self._client = client
        self._engine = Engine(client, options)
        # a batch dropped without running closes its streams (before they are collected: a
        # weakref callback runs ahead of the streams' own finalizers, even in a cycle); once
        # it runs, what runs it closes them
        self._unused = weakref.finalize(self, _close_streams, self._engine)
        self._tg: anyio.abc.TaskGroup | None = None
        self._state = "new"  # new | entered | iterating | closed
        self._iterator: _Outcomes | None = None

    def __repr__(self) -> str:
        s = self._engine.statistics()
        return (
            f"<{type(self).__name__} {self._state} jobs={s.jobs} in_flight={s.in_flight} "
            f"completed={s.completed} failed={s.failed}>"
        )

    @abc.abstractmethod
    def _source(self) -> BatchInput | AsyncIterator[Any]:
        """The jobs to run."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"this {type(self).__name__} has already run; make a new one")
        self._tg = tg = await open_task_group()
        self._state = "entered"
        self._unused.detach()
        tg.start_soon(self._engine.run, self._source())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        self._state = "closed"
        await close_task_group(tg)
        self._engine.receive.close()

    def cancel(self) -> None:
        """Stop the batch: no more submits or polls (running tasks are in ``abandoned``)."""
        self._engine.cancel()

    def discard(self) -> None:
        """Close the streams of a batch that will not run (its task was cancelled before it
        entered ``async with``); a batch that ran closes its own."""
        if self._state == "new":
            self._state = "closed"
            _close_streams(self._engine)

    # -- outcomes ----------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[Outcome]:
        if self._state == "entered":
            if self._iterator is None:
                self._iterator = _Outcomes(self._engine, cancel_on_drop=False)
            return self._iterator
        if self._state != "new":
            raise RuntimeError(f"this {type(self).__name__} is already being iterated or has ended")
        services = self._client._services
        if services is None:
            raise ConfigurationError(
                "the client is not open: use `async with AsyncClient(...) as client:`",
                provider=self._client.provider.name,
            )
        self._state = "iterating"
        self._unused.detach()
        services.start_soon(self._engine.run, self._source())
        return _Outcomes(self._engine, cancel_on_drop=True)

    async def __anext__(self) -> Outcome:
        """The next outcome (inside ``async with`` only: ``await anext(outcomes)``)."""
        if self._state != "entered":
            raise RuntimeError(
                f"use `async with` (or `async for`) on this {type(self).__name__} first"
            )
        return await self.__aiter__().__anext__()

    # -- information -------------------------------------------------------------------------
    def statistics(self) -> BatchStats:
        """Counters so far: jobs, HTTP requests, polls per task, 429s, retries, cost..."""
        return self._engine.statistics()

    def events(self) -> AsyncIterator[Event]:
        """An async iterator over this batch's events from now on (ends with the batch).
        Events are also delivered to ``on_event``."""
        return self._engine.events.subscribe()

    @property
    def abandoned(self) -> dict[Hashable, str | None]:
        """After a cancellation: key -> id of each task left running at the provider (None
        when its submit was on the wire and its answer unknown). Empty after a full run."""
        return dict(self._engine.abandoned)

    @property
    def done(self) -> bool:
        """True once the batch has ended (all outcomes out, or cancelled)."""
        return self._engine.done.is_set()

    async def wait_done(self) -> None:
        """Wait until the batch has ended (all outcomes out, or cancelled)."""
        await self._engine.done.wait()

    @property
    def max_in_flight(self) -> int:
        """Tasks submitted and not finished, at most; may be changed while running."""
        return self._engine.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        self._engine.max_in_flight = value


class MapRun(_BatchBase):
    """The batch ``client.map(requests, ...)`` returns: an async iterator of outcomes, in
    completion order, usable with or without ``async with`` (see the module docstring).

    The input is pulled lazily: at most ``max_in_flight + prefetch`` jobs are held between
    being pulled and their outcome being received. If the input raises, no more jobs are
    taken; the jobs already taken finish, then the iterator raises that error.
    """

    def __init__(self, client: BatchClient, requests: BatchInput, options: BatchOptions) -> None:
        if isinstance(requests, VideoRequest | str | bytes) or not isinstance(
            requests, Iterable | AsyncIterable
        ):
            raise ValidationError(
                "requests", requests, "must be an iterable or async iterable of VideoRequest"
            )
        super().__init__(client, options)
        self._requests = requests

    def _source(self) -> BatchInput:
        return self._requests


class Batch(_BatchBase):
    """A batch you add requests to while outcomes stream (``client.open_batch(...)``).

    ``add`` queues a request at once; ``await put(...)`` waits while ``prefetch`` requests are
    already queued (back-pressure). ``close()`` says no more will come: iterating the batch
    ends after the last outcome (without ``close()`` it waits for more).
    """

    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        super().__init__(client, options)
        self._inbox = _Inbox(max(1, self._engine.prefetch))
        self._next_key = 0

    def _source(self) -> AsyncIterator[Any]:
        return self._inbox

    def add(self, request: VideoRequest, *, key: Hashable | None = None) -> Hashable:
        """Queue ``request``; returns its key (``key``, else a running number from 0)."""
        item = self._item(request, key)
        self._inbox.put_nowait(item)
        return item[0]

    async def put(self, request: VideoRequest, *, key: Hashable | None = None) -> Hashable:
        """Queue ``request``, first waiting while the queue is full; returns its key."""
        item = self._item(request, key)
        await self._inbox.put(item)
        return item[0]

    def close(self) -> None:
        """No more requests: iteration ends once every queued job has its outcome."""
        self._inbox.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._inbox.closed

    def _item(self, request: VideoRequest, key: Hashable | None) -> tuple[Hashable, VideoRequest]:
        if self._inbox.closed:
            raise RuntimeError("this batch is closed: no more requests can be added")
        if not isinstance(request, VideoRequest):
            raise ValidationError("request", request, "must be a VideoRequest")
        if key is None:
            key = self._next_key
            self._next_key += 1
        return key, request


class _Outcomes:
    """The async iterator over a batch's outcomes. Receiving an outcome frees room in the
    batch's window. With ``cancel_on_drop`` (plain ``async for``), dropping it cancels the
    batch."""

    def __init__(self, engine: Engine, *, cancel_on_drop: bool) -> None:
        self._engine = engine
        self._receive = engine.receive
        self._cancel_on_drop = cancel_on_drop

    def __aiter__(self) -> _Outcomes:
        return self

    async def __anext__(self) -> Outcome:
        try:
            # a ready outcome is handed over without a trip through the event loop: one trip
            # per outcome would let finished jobs pile up in the window and starve the feeder
            try:
                outcome = self._receive.receive_nowait()
            except anyio.WouldBlock:
                outcome = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            failure, self._engine.failure = self._engine.failure, None
            if failure is not None:
                raise failure from None
            raise StopAsyncIteration from None
        self._engine.window.release()
        return outcome

    def __del__(self) -> None:
        if not self._cancel_on_drop:
            return
        self._receive.close()
        if not self._engine.done.is_set():
            # at interpreter shutdown the loop may be gone: nothing is left to cancel then
            with contextlib.suppress(Exception):
                self._engine.cancel()


class _Inbox:
    """The queue behind ``Batch.add``: an async iterator ending after ``close()``."""

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[Hashable, VideoRequest]] = deque()
        self._limit = limit
        self.closed = False
        self._readable = anyio.Event()
        self._writable = anyio.Event()

    def put_nowait(self, item: tuple[Hashable, VideoRequest]) -> None:
        self._items.append(item)
        self._readable.set()

    async def put(self, item: tuple[Hashable, VideoRequest]) -> None:
        while len(self._items) >= self._limit and not self.closed:
            if self._writable.is_set():
                self._writable = anyio.Event()
            await self._writable.wait()
        self.put_nowait(item)

    def close(self) -> None:
        self.closed = True
        self._readable.set()

    def __aiter__(self) -> _Inbox:
        return self

    async def __anext__(self) -> tuple[Hashable, VideoRequest]:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            if self._readable.is_set():
                self._readable = anyio.Event()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item


def _close_streams(engine: Engine) -> None:
    """Close a batch's outcome streams and end its events() iterators (idempotent)."""
    engine.close_streams()
    engine.events.close()
