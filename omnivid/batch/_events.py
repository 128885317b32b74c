"""Where a batch's :class:`~omnivid.Event` s go: the ``on_event`` callback and any number of
``events()`` async iterators (unbounded, so a slow reader never holds the batch back)."""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._outcome import Event, EventKind

__all__ = ["EventHub"]

log = logging.getLogger("omnivid")


class EventHub:
    """Builds events only when someone listens, and hands them to every listener."""

    def __init__(self, handler: Callable[[Event], None] | None) -> None:
        self._handler = handler
        self._streams: list[MemoryObjectSendStream[Event]] = []
        self._handler_failed = False
        self._closed = False

    @property
    def active(self) -> bool:
        """True when an event would reach someone."""
        return self._handler is not None or bool(self._streams)

    def emit(
        self, kind: EventKind, key: Hashable | None, task_id: str | None, **detail: Any
    ) -> None:
        """Deliver one event; a raising handler is logged (once) and ignored."""
        if not self.active:
            return
        event = Event(kind=kind, key=key, task_id=task_id, detail=detail, at=anyio.current_time())
        if self._handler is not None:
            try:
                self._handler(event)
            except Exception:
                if not self._handler_failed:
                    self._handler_failed = True
                    log.exception("the batch's on_event handler raised; events go on")
        broken = []
        for stream in self._streams:
            try:
                stream.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                broken.append(stream)  # its reader is gone (a loop left early): forget it
        for stream in broken:
            self._streams.remove(stream)
            stream.close()

    def subscribe(self) -> AsyncIterator[Event]:
        """A new iterator over the events from now on; it ends when the hub closes."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        if self._closed:
            send.close()
        else:
            self._streams.append(send)
        return _EventIterator(receive)

    def close(self) -> None:
        """End every iterator (after the events already sent)."""
        self._closed = True
        for stream in self._streams:
            stream.close()
        self._streams.clear()


class _EventIterator:
    """Async iterator over one subscriber's events."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive
        # a loop left early closes its stream when the iterator goes (a weakref callback runs
        # ahead of the stream's own finalizer, even in a reference cycle)
        weakref.finalize(self, receive.close)

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None
