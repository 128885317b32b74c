"""How :func:`~omnivid.map_many` routes jobs: the clients by provider and models by client,
per-account settings, the input's items, each account's inbox, and the keys seen in a run.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream

from .._models import VideoRequest
from ..errors import ConfigurationError, ValidationError
from ..providers import Provider
from ._outcome import Event

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = [
    "END",
    "Inbox",
    "Item",
    "SeenKeys",
    "clients_by_provider",
    "model_routes",
    "parse_item",
    "per_account",
    "tagged",
]

Item = tuple[Hashable, VideoRequest]
"""A job as the router hands it to an account: its key and request."""


class Inbox:
    """An account's jobs, as its batch reads them: a ready job is taken without a trip
    through the event loop (as from a plain iterator), so routing adds no loop turn per job
    while the account's stream holds some."""

    __slots__ = ("_receive",)

    def __init__(self, receive: MemoryObjectReceiveStream[Item]) -> None:
        self._receive = receive

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> Item:
        try:
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """The batch ended: the router's next send to it fails (and stops the input)."""
        self._receive.close()


class SeenKeys:
    """The journal keys routed in this run, as a Bloom filter of 2**23 bits (1 MiB, whatever
    the number of keys): "not seen" is certain, "seen" may be wrong (about 3% of keys after a
    million distinct ones, 0.005% after 100,000), and then the journal is asked."""

    __slots__ = ("_bits",)
    _MASK = (1 << 23) - 1

    def __init__(self) -> None:
        self._bits = bytearray((self._MASK + 1) >> 3)

    def add(self, key: str) -> bool:
        """Note ``key``; whether it may have been noted before (False: certainly not)."""
        h = hash(key)
        a, b, m = h & 0xFFFF_FFFF, ((h >> 32) & 0xFFFF_FFFF) | 1, self._MASK
        s1, s2, s3 = a & m, (a + b) & m, (a + 2 * b) & m
        i1, f1, i2, f2, i3, f3 = (
            s1 >> 3,
            1 << (s1 & 7),
            s2 >> 3,
            1 << (s2 & 7),
            s3 >> 3,
            1 << (s3 & 7),
        )
        bits = self._bits
        seen = bool(bits[i1] & f1 and bits[i2] & f2 and bits[i3] & f3)
        bits[i1] |= f1
        bits[i2] |= f2
        bits[i3] |= f3
        return seen

    def __contains__(self, key: str) -> bool:
        h = hash(key)
        a, b, m = h & 0xFFFF_FFFF, ((h >> 32) & 0xFFFF_FFFF) | 1, self._MASK
        bits = self._bits
        return all(bits[s >> 3] & (1 << (s & 7)) for s in (a & m, (a + b) & m, (a + 2 * b) & m))


END = object()
"""The end of an input (``next(iterator, END)``)."""


def parse_item(item: Any, index: int) -> Item | None:
    """``(key, request)`` for an input item, None for an item that is neither form."""
    if isinstance(item, VideoRequest):
        return index, item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], VideoRequest):
        return item[0], item[1]
    return None


def clients_by_provider(clients: Iterable[AsyncClient]) -> dict[str, AsyncClient]:
    """The clients by provider name; a ``ConfigurationError`` for two of one provider."""
    if not isinstance(clients, Iterable) or isinstance(clients, str | bytes):
        raise ConfigurationError(
            f"map_many takes a list of AsyncClient (one per provider), not {clients!r}"
        )
    found: dict[str, AsyncClient] = {}
    for client in clients:
        provider = getattr(client, "provider", None)
        if not isinstance(provider, Provider) or not hasattr(client, "submit"):
            raise ConfigurationError(f"map_many takes AsyncClient objects, not {client!r}")
        if provider.name in found:
            raise ConfigurationError(
                f"two clients for {provider.name}: map_many takes one client per provider, "
                "and each job goes to the one whose provider offers its model; run another "
                "account's jobs in a map of their own",
                provider=provider.name,
            )
        found[provider.name] = client
    if not found:
        raise ConfigurationError("map_many needs at least one AsyncClient")
    return found


def model_routes(clients: Mapping[str, AsyncClient]) -> dict[str, str]:
    """Model name -> the provider (of those given) that offers it."""
    routes: dict[str, str] = {}
    for name, client in clients.items():
        for model in client.provider.models:
            other = routes.setdefault(model, name)
            if other != name:
                raise ConfigurationError(
                    f"model {model!r} is offered by both {other} and {name}: the job's "
                    "account would be ambiguous",
                    model=model,
                )
    return routes


def per_account(field: str, value: Any, names: list[str], default: Any) -> dict[str, Any]:
    """A setting for each account from one value or a mapping by provider name."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    unknown = sorted(str(k) for k in value if k not in names)
    if unknown:
        raise ValidationError(
            field,
            dict(value),
            f"names {', '.join(unknown)}; the providers given are {', '.join(names)}",
        )
    return {name: value.get(name, default) for name in names}


def tagged(handler: Callable[[Event], None], provider: str) -> Callable[[Event], None]:
    """``handler`` receiving ``provider``'s events with ``detail["provider"]``."""

    def on_event(event: Event) -> None:
        handler(attrs.evolve(event, detail={**event.detail, "provider": provider}))

    return on_event
