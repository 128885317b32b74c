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

A token authenticates exactly one task: the one its submit created, or, for a submit whose
answer was lost, the first task its callback names that reads back (same account, same model).
A callback naming any other task is refused and changes nothing (no binding, no read-back, no
"recovered" entry), so a token seen once cannot credit a paid task to the wrong job.

Answers (never echoing the token or the body): 200 confirmed or duplicate; 400 malformed body
(not a JSON task object, or ``id`` missing or not a string); 403 wrong token, a token issued for
another task, or a task not issued by this receiver; 409 not terminal yet or the submit has not
answered yet (the provider retries after 1, 2 and 4 s); 413 body over ``max_body``; 429 the
task was read back less than ``readback_interval`` ago; 503 no client attached or the read-back
failed within ``confirm_timeout`` (the provider retries).

Read-backs are bounded per token, so forged or replayed callbacks cannot make the receiver
hammer the provider: at most one is in flight (copies wait for it, then are answered from its
result) and none starts within ``readback_interval`` of the last one.

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
from ..errors import ConfigurationError, NotFoundError, OmnividError, ValidationError
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
    model: str | None = None
    state: Literal["in-flight", "ambiguous", "bound"] = "in-flight"
    task_id: str | None = None


_NOT_FOUND = object()
"""A read-back answered 404: the task does not exist for this account."""


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
    bytes is the largest callback body read. ``readback_interval`` (provider seconds, scaled
    by the attached client's ``time_scale``) is the least time between two read-backs for one
    token. ``max_remembered`` bounds the in-memory maps of issued tokens, confirmed results,
    pending wake-ups and read-back times. ``clock`` gives wall time.

    ``stats`` counts callbacks: ``received``, ``confirmed``, ``duplicate``, ``forged`` (wrong
    or badly shaped token, or a token of another task), ``unknown`` (no token issued for the
    task, or a lost submit's token naming a task that does not read back as ours),
    ``malformed``, ``too_large``, ``early``, ``unconfirmed``, ``throttled``, ``unavailable``
    and ``recovered``.
    """

    def __init__(
        self,
        public_url: str,
        *,
        store: TokenStore | None = None,
        fallback_poll: PollPolicy | None = None,
        confirm_timeout: float = 8.0,
        max_body: int = 64 * 1024,
        readback_interval: float = 2.5,
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
        self.readback_interval = readback_interval
        self.max_remembered = max_remembered
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self._client: AsyncClient | None = None
        self._issued: OrderedDict[str, _Issued] = OrderedDict()
        self._results: OrderedDict[str, Task] = OrderedDict()
        self._wakes: OrderedDict[str, None] = OrderedDict()
        self._recovered: dict[str, Recovered] = {}
        self._locks: dict[str, tuple[anyio.Lock, list[int]]] = {}
        self._read_at: OrderedDict[str, float] = OrderedDict()  # last read-back, per digest

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
        model = body.get("model")
        issued = _Issued(request_fingerprint, model if isinstance(model, str) else None)
        self._remember(self._issued, token_digest(token), issued)
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
        return await self._confirm(client, task_id, digest)

    async def _unbound(self, client: AsyncClient, task_id: str, digest: str) -> CallbackReply:
        issued = self._issued.get(digest)
        if issued is None:
            log.warning("rejected a callback for task %r: no token issued for it", task_id)
            return self._rejected("unknown", 403, "invalid callback token")
        if issued.state == "in-flight":
            return self._rejected("early", 409, "submit not answered yet; retry later")
        if issued.state == "bound" and issued.task_id != task_id:
            return self._other_task(task_id)
        if issued.state == "bound":
            # the store lost the record (expired, evicted, failed); the token is this task's
            await self._store_digest(task_id, digest)
            return await self._confirm(client, task_id, digest)
        return await self._confirm(client, task_id, digest, lost=issued)

    def _other_task(self, task_id: str) -> CallbackReply:
        log.warning("rejected a callback for task %r: its token was issued for another", task_id)
        return self._rejected("forged", 403, "invalid callback token")

    async def _confirm(
        self, client: AsyncClient, task_id: str, digest: str, *, lost: _Issued | None = None
    ) -> CallbackReply:
        """Read ``task_id`` back (once per token at a time, not again within the interval) and
        wake its waiters when it is terminal. ``lost``: the token of a submit whose answer was
        lost, bound to ``task_id`` only if that task reads back as this account's."""
        async with self._exclusive(digest):
            if lost is not None and lost.state == "bound":  # a concurrent callback bound it
                if lost.task_id != task_id:
                    return self._other_task(task_id)
                lost = None
            if lost is None and await self._is_confirmed(task_id):
                self.stats["duplicate"] += 1
                return _reply(200, status="duplicate")
            now = anyio.current_time()
            last = self._read_at.get(digest)
            if last is not None and 0 <= now - last < self._interval(client):
                return self._rejected("throttled", 429, "task read back recently; retry later")
            self._remember(self._read_at, digest, now)
            found: Task | object | None = None
            with anyio.move_on_after(self.confirm_timeout):
                found = await _quiet_get(client, task_id)
            if lost is not None and not self._is_our_task(found, lost):
                log.warning("rejected a callback for task %r: not a task of ours", task_id)
                return self._rejected("unknown", 403, "invalid callback token")
            if not isinstance(found, Task):
                return self._rejected("unavailable", 503, "could not read the task back")
            task = found
            if lost is not None:
                lost.state, lost.task_id = "bound", task_id
                await self._store_digest(task_id, digest)
                self._recover(task, lost.fingerprint)
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

    def _interval(self, client: AsyncClient) -> float:
        return self.readback_interval * client.time_scale

    @staticmethod
    def _is_our_task(found: object, lost: _Issued) -> bool:
        """Whether a lost submit's token may be bound to the task read back: it exists for
        this account (a 404 means a made-up id or another account's task) and has the
        submitted model. A read-back that failed otherwise proves nothing either way."""
        if found is _NOT_FOUND:
            return False
        if isinstance(found, Task):
            return lost.model is None or found.model in (None, lost.model)
        return True

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
    """The task id a callback body claims, or None when the body is not a task object or its
    ``id`` is missing, not a string or not shaped like a task id."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            return None
        claimed = data.get("id")
        if not isinstance(claimed, str) or not TASK_ID_PATTERN.fullmatch(claimed):
            return None
        task = client.provider.parse_task(data)
    except Exception:  # hostile input: any parse failure (deep nesting, odd numbers) is "malformed"
        return None
    return claimed if task.id == claimed else None


async def _quiet_get(client: AsyncClient, task_id: str) -> Task | object | None:
    """The task read back; ``_NOT_FOUND`` for a 404; None when the read failed otherwise."""
    try:
        return await client.get(task_id)
    except NotFoundError:
        log.warning("task %s named by a callback does not exist for this account", task_id)
        return _NOT_FOUND
    except OmnividError as exc:
        log.warning("could not read task %s back after its callback (%s)", task_id, exc)
        return None
