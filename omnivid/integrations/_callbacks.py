"""The framework-independent callback receiver: per-task tokens, verification, read-back, wake-up.

Flow for one EvoLink submit through a client created with ``callbacks=receiver``:

1. ``prepare``: a fresh token ``t = secrets.token_urlsafe(32)`` (256 bits) goes into the submit
   body as ``callback_url = public_url + "/" + t``. The request object (and so any journal or
   log of it) never holds the token; only the body sent to the provider does.
2. ``bind``: once the submit answers with a task id, the store keeps ``sha256(t)`` for it.
3. ``handle(t, body)`` for ``POST public_url/t``: the body names the task; the token must match
   that task's digest (``hmac.compare_digest``). The body is otherwise not trusted: the task is
   read back with ``GET /v1/tasks/{id}``, and only a terminal read-back counts. Then waiters
   (``wait``, ``watch``, ``map``) are woken at once, the task is kept for ``result(id)``, and
   the record is marked confirmed so duplicates are answered 200 without another read-back.

Answers (never echoing the token or the body): 200 confirmed or duplicate; 400 malformed body;
403 wrong token or task not issued by this receiver; 409 not terminal yet or the submit has not
answered yet (the provider retries after 1, 2 and 4 s); 413 body over ``max_body``; 503 no
client attached or the read-back failed within ``confirm_timeout`` (the provider retries).

A callback whose token belongs to a submit that failed with ``SubmissionUnknownError`` (the
provider accepted it, but its answer was lost) recovers that task id: it is read back, bound,
logged and listed in ``recovered``, so a paid task is never lost.

Polling stays as the fallback: the client then polls by ``fallback_poll``, a long interval
(by default the first poll 120 s after submit, then every 120 to 300 s), so a lost callback only
delays a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import anyio
from attrs import define, frozen

from .._models import Task
from .._polling import PollPolicy
from ..errors import ConfigurationError, OmnividError, ValidationError
from ..providers._rules import Checker
from ._store import MemoryTokenStore, TokenRecord, TokenStore

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = [
    "DEFAULT_FALLBACK_POLL",
    "CallbackReceiver",
    "CallbackReply",
    "Recovered",
    "token_digest",
]

log = logging.getLogger("omnivid.callbacks")

TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
"""What ``secrets.token_urlsafe(32)`` produces: 43 URL-safe base64 characters."""
TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")

DEFAULT_FALLBACK_POLL = PollPolicy(floor=120.0, min_interval=120.0, max_interval=300.0)
"""The poll policy of a client whose results normally arrive by callback: first poll at least
120 s after submit, then every 120 to 300 s (a lost callback delays a result by at most ~5 min)."""


def token_digest(token: str) -> str:
    """``sha256(token)`` in hex: what stores keep instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@frozen
class CallbackReply:
    """The HTTP answer to one callback: a status and a small JSON object without secrets."""

    status: int
    body: Mapping[str, str]


@frozen
class Recovered:
    """A task found through its callback after its submit raised ``SubmissionUnknownError``
    (or, with ``resubmit_ambiguous``, created by a submit attempt whose answer was lost)."""

    fingerprint: str
    task: Task


@define
class _Issued:
    fingerprint: str
    state: Literal["in-flight", "ambiguous", "bound"] = "in-flight"
    task_id: str | None = None


def _reply(code: int, **body: str) -> CallbackReply:
    return CallbackReply(code, body)


class CallbackReceiver:
    """Receives EvoLink callbacks for one :class:`~omnivid.AsyncClient`.

    ``public_url`` is the address the provider can reach the callback route at, without the
    token (``https://app.example.com/omnivid/callbacks``); mount the route with
    :func:`omnivid.integrations.fastapi.callback_router` or
    :func:`omnivid.integrations.aiohttp.callback_app`. Then create the client with
    ``AsyncClient("evolink", callbacks=receiver)``.

    ``store`` keeps token digests (default :class:`MemoryTokenStore`: this process only).
    ``fallback_poll`` is the client's poll policy unless it is given one. ``confirm_timeout``
    (real seconds, below EvoLink's 10 s callback timeout) bounds the read-back. ``max_body``
    bytes is the largest callback body read. ``max_remembered`` bounds the in-memory maps of
    issued tokens, confirmed results and pending wake-ups. ``clock`` gives wall time.

    ``stats`` counts callbacks: ``received``, ``confirmed``, ``duplicate``, ``forged`` (wrong
    or badly shaped token), ``unknown`` (no token issued for the task), ``malformed``,
    ``too_large``, ``early``, ``unconfirmed``, ``unavailable`` and ``recovered``.
    """

    def __init__(
        self,
        public_url: str,
        *,
        store: TokenStore | None = None,
        fallback_poll: PollPolicy | None = None,
        confirm_timeout: float = 8.0,
        max_body: int = 64 * 1024,
        max_remembered: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("public_url", public_url, "must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ValidationError("public_url", public_url, "must have no query or fragment")
        self.public_url = public_url.rstrip("/")
        self.store: TokenStore = store if store is not None else MemoryTokenStore(clock=clock)
        self.fallback_poll = fallback_poll or DEFAULT_FALLBACK_POLL
        self.confirm_timeout = confirm_timeout
        self.max_body = max_body
        self.max_remembered = max_remembered
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self._client: AsyncClient | None = None
        self._issued: OrderedDict[str, _Issued] = OrderedDict()
        self._results: OrderedDict[str, Task] = OrderedDict()
        self._wakes: OrderedDict[str, None] = OrderedDict()
        self._recovered: dict[str, Recovered] = {}
        self._locks: dict[str, tuple[anyio.Lock, list[int]]] = {}

    def __repr__(self) -> str:
        return f"<CallbackReceiver {self.public_url!r} confirmed={self.stats['confirmed']}>"

    @property
    def path(self) -> str:
        """The path part of ``public_url`` (the default route prefix)."""
        return urlsplit(self.public_url).path.rstrip("/") or "/"

    @property
    def client(self) -> AsyncClient | None:
        """The attached client, if any."""
        return self._client

    # -- client side --------------------------------------------------------------------------
    def attach(self, client: AsyncClient) -> None:
        """Serve ``client`` (called by ``AsyncClient(callbacks=...)``). ``ConfigurationError``
        when its provider has no callbacks or another client is attached; ``ValidationError``
        when the provider would refuse ``public_url``."""
        provider = client.provider
        if provider.callback_field is None:
            raise ConfigurationError(
                f"{provider.name} does not call back; use polling (omit callbacks=)",
                provider=provider.name,
            )
        if self._client is not None and self._client is not client:
            raise ConfigurationError(
                "this CallbackReceiver already serves another client; create one per client",
                provider=provider.name,
            )
        probe = self.url_for("T" * 43)
        try:
            Checker(provider.name, "callbacks").callback_url(
                probe, allow_private=client.check_options.allow_private_callbacks
            )
        except ValidationError as exc:
            raise ValidationError(
                "public_url", self.public_url, exc.rule, provider=provider.name
            ) from None
        self._client = client

    def detach(self, client: AsyncClient) -> None:
        """Stop serving ``client`` (called when it closes); later callbacks get 503."""
        if self._client is client:
            self._client = None

    def url_for(self, token: str) -> str:
        """The callback URL carrying ``token``."""
        return f"{self.public_url}/{token}"

    def prepare(
        self, request_fingerprint: str, body: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """A fresh token and a copy of ``body`` carrying its callback URL; ``(None, body)`` when
        the body already has a callback URL (the caller's own) or no client is attached."""
        client = self._client
        field = client.provider.callback_field if client is not None else None
        if field is None or body.get(field) is not None:
            return None, body
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._remember(self._issued, token_digest(token), _Issued(request_fingerprint))
        return token, {**body, field: self.url_for(token)}

    async def bind(self, task_id: str, token: str) -> None:
        """Bind ``token`` to the task its submit created. A store failure is logged, not
        raised: the task id must reach the caller; its result then comes by polling."""
        digest = token_digest(token)
        issued = self._issued.get(digest)
        if issued is not None:
            issued.state, issued.task_id = "bound", task_id
        await self._store_digest(task_id, digest)

    def submit_failed(self, token: str, *, ambiguous: bool) -> None:
        """The submit carrying ``token`` failed. When ``ambiguous`` (``SubmissionUnknownError``:
        the provider may have accepted it) its callback, if one comes, recovers the task id
        (see ``recovered``); otherwise the token is dropped."""
        digest = token_digest(token)
        issued = self._issued.get(digest)
        if issued is None:
            return
        if ambiguous:
            issued.state = "ambiguous"
        else:
            del self._issued[digest]

    def take_wake(self, task_id: str) -> bool:
        """True (once) when a callback confirmed ``task_id`` while nobody was waiting on it, so
        a waiter that starts later polls at once instead of sleeping."""
        if task_id in self._wakes:
            del self._wakes[task_id]
            return True
        return False

    def result(self, task_id: str) -> Task | None:
        """The terminal task read back after its confirmed callback, if still remembered."""
        return self._results.get(task_id)

    @property
    def recovered(self) -> Mapping[str, Recovered]:
        """Tasks, by id, found only through their callbacks (their submit answer was lost)."""
        return dict(self._recovered)

    # -- provider side -----------------------------------------------------------------------
    async def handle(self, token: str, body: bytes) -> CallbackReply:
        """Answer one ``POST public_url/{token}`` with raw ``body`` (see the module docstring)."""
        self.stats["received"] += 1
        if len(body) > self.max_body:
            return self._rejected("too_large", 413, "callback body too large")
        if not TOKEN_PATTERN.fullmatch(token):
            return self._rejected("forged", 403, "invalid callback token")
        client = self._client
        if client is None:
            return self._rejected("unavailable", 503, "no client is attached; retry later")
        task_id = _claimed_task_id(client, body)
        if task_id is None:
            return self._rejected("malformed", 400, "malformed callback body")
        digest = token_digest(token)
        try:
            record = await self.store.get(task_id)
        except Exception as exc:
            log.warning("token store failed (%s) on a callback", type(exc).__name__)
            return self._rejected("unavailable", 503, "token store unavailable; retry later")
        if record is None:
            return await self._unbound(client, task_id, digest)
        if not hmac.compare_digest(record.digest, digest):
            log.warning("rejected a callback for task %r: wrong token", task_id)
            return self._rejected("forged", 403, "invalid callback token")
        return await self._confirm(client, task_id)

    async def _unbound(self, client: AsyncClient, task_id: str, digest: str) -> CallbackReply:
        issued = self._issued.get(digest)
        if issued is None:
            log.warning("rejected a callback for task %r: no token issued for it", task_id)
            return self._rejected("unknown", 403, "invalid callback token")
        if issued.state == "in-flight":
            return self._rejected("early", 409, "submit not answered yet; retry later")
        # The token is ours, so the provider created this task from one of our submits. Either
        # the store lost the record (expired, evicted, failed), or the submit's answer was lost.
        lost = not (issued.state == "bound" and issued.task_id == task_id)
        await self._store_digest(task_id, digest)
        return await self._confirm(client, task_id, lost_from=issued.fingerprint if lost else None)

    async def _confirm(
        self, client: AsyncClient, task_id: str, *, lost_from: str | None = None
    ) -> CallbackReply:
        async with self._exclusive(task_id):
            if await self._is_confirmed(task_id):
                self.stats["duplicate"] += 1
                return _reply(200, status="duplicate")
            task = None
            with anyio.move_on_after(self.confirm_timeout):
                task = await _quiet_get(client, task_id)
            if task is None:
                return self._rejected("unavailable", 503, "could not read the task back")
            if lost_from is not None:
                self._recover(task, lost_from)
            if not task.is_terminal:
                return self._rejected("unconfirmed", 409, "task not finished; retry later")
            try:
                await self.store.confirm(task_id, self._clock())
            except Exception as exc:
                log.warning(
                    "token store failed (%s) confirming task %s", type(exc).__name__, task_id
                )
            self.stats["confirmed"] += 1
            self._remember(self._results, task_id, task)
            if not client.nudge(task_id):
                self._remember(self._wakes, task_id, None)
            log.info("callback for task %s confirmed: %s", task_id, task.status.value)
            return _reply(200, status="confirmed")

    def _recover(self, task: Task, fingerprint: str) -> None:
        if task.id not in self._recovered:
            self.stats["recovered"] += 1
            log.warning(
                "task %s was created by a submit whose answer was lost (request fingerprint "
                "%s); it is listed in CallbackReceiver.recovered",
                task.id,
                fingerprint[:16],
            )
        self._recovered[task.id] = Recovered(fingerprint, task)

    async def _is_confirmed(self, task_id: str) -> bool:
        try:
            record = await self.store.get(task_id)
        except Exception as exc:
            log.warning("token store failed (%s) reading task %s", type(exc).__name__, task_id)
            return False
        return record is not None and record.confirmed_at is not None

    async def _store_digest(self, task_id: str, digest: str) -> None:
        try:
            await self.store.put(task_id, TokenRecord(digest, created_at=self._clock()))
        except Exception as exc:
            log.warning(
                "could not store the callback token of task %s (%s); its result will come "
                "by polling",
                task_id,
                type(exc).__name__,
            )

    # -- helpers -----------------------------------------------------------------------------
    def _rejected(self, reason: str, status: int, message: str) -> CallbackReply:
        self.stats[reason] += 1
        return _reply(status, error=message)

    def _remember(self, mapping: OrderedDict[str, Any], key: str, value: Any) -> None:
        mapping.pop(key, None)
        mapping[key] = value
        while len(mapping) > self.max_remembered:
            mapping.popitem(last=False)

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (anyio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


def _claimed_task_id(client: AsyncClient, body: bytes) -> str | None:
    """The task id a callback body claims, or None when the body is not a task object."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            return None
        task = client.provider.parse_task(data)
    except Exception:  # hostile input: any parse failure (deep nesting, odd numbers) is "malformed"
        return None
    return task.id if isinstance(task.id, str) and TASK_ID_PATTERN.fullmatch(task.id) else None


async def _quiet_get(client: AsyncClient, task_id: str) -> Task | None:
    try:
        return await client.get(task_id)
    except OmnividError as exc:
        log.warning("could not read task %s back after its callback (%s)", task_id, exc)
        return None
