"""HTTP to one provider account: typed errors, the shared gate, and retries via ``backoff``.

Reads (GET) are retried on connection errors, timeouts, 429, 5xx and unreadable 2xx bodies.
A submit (POST) is retried only where the provider provably did not accept it: a 429, or a
connection that failed before the body was sent. Anything else after sending raises
:class:`~omnivid.errors.SubmissionUnknownError` (unless ``resubmit_ambiguous``).

Back-off waits without a server hint are multiplied by ``time_scale`` (a server's
``Retry-After`` is real seconds and is not). An endpoint no request has ever reached
(connection refused, DNS failure, connect timeout) is given up on :data:`UNREACHABLE_AFTER`
provider seconds (times ``time_scale``) after its first failure: the last wait is cut short
to that moment, then :class:`~omnivid.errors.EndpointUnreachableError` names the URL.

The API key is sent in the ``Authorization`` header only, and never logged or put in errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import anyio
import backoff
from attrs import frozen

from .._aio import clock as _clock
from .._models import Task, VideoRequest
from ..errors import (
    APIError,
    ConnectionFailedError,
    EndpointUnreachableError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TransportError,
    TransportTimeoutError,
    ValidationError,
)
from ..providers import Provider
from ..providers._wire import decode_json
from .gate import AccountGate
from .retry import RetryPolicy, parse_retry_after, retry_hint

__all__ = ["UNREACHABLE_AFTER", "Timeouts", "Transport"]

log = logging.getLogger("omnivid")
T = TypeVar("T")


@frozen(kw_only=True)
class Timeouts:
    """Seconds: ``connect`` to open a connection; ``total`` for a whole API exchange (None:
    no limit beyond the other two); ``read``, the longest silence between bytes of a video
    download, and of an API answer when ``total`` is None.

    An API answer is a few KiB that arrives at once, so under a ``total`` limit a silence
    limit would add nothing but a timer rearmed on every request (measured: about 6 µs of CPU
    per request, 3% of B1's throughput).
    """

    connect: float = 10.0
    read: float = 60.0
    total: float | None = 120.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """As aiohttp's timeout object, for API exchanges."""
        return aiohttp.ClientTimeout(
            total=self.total,
            sock_connect=self.connect,
            sock_read=self.read if self.total is None else None,
        )


_NO_SCOPE = contextlib.nullcontext()  # a GET needs no shield (reusable, it holds nothing)
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
"""A task id that ``quote(task_id, safe="")`` would leave as it is."""
UNREACHABLE_AFTER = 30.0
"""Provider seconds after which an endpoint that no request ever reached is given up on."""


_NotSent = ConnectionFailedError
"""A connection failure before the request body left: safe to resend (public, as it may
reach the caller once retries run out)."""
_REDACTED = "<redacted>"
_MIN_SECRET = 8
"""Keys shorter than this are not looked for in answers (a test key such as ``k`` would
otherwise blank out every ``k`` of a body)."""


class Transport:
    """Sends API requests for one provider account and turns answers into tasks or errors."""

    def __init__(
        self,
        *,
        provider: Provider,
        api_key: str,
        base_url: str,
        session: aiohttp.ClientSession,
        timeouts: Timeouts,
        retry: RetryPolicy,
        gate: AccountGate,
        time_scale: float = 1.0,
    ) -> None:
        self.provider = provider
        self._auth = {"Authorization": f"Bearer {api_key}"}
        # some APIs echo the key in error bodies: answers are redacted before anything reads
        # them (errors, logs, the journal)
        self._secret = api_key if len(api_key) >= _MIN_SECRET else ""
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeouts = timeouts
        self._timeout = timeouts.client_timeout()
        self.retry = retry
        self.gate = gate
        self.counters: Counter[str] = Counter()
        self.time_scale = time_scale
        self.reached = False  # an answer (any status) has come from the endpoint
        self._unreached_since: float | None = None  # first connect failure, while never reached
        self._unreached_why = ""
        self._not_sent_listeners: list[Callable[[ConnectionFailedError], None]] = []
        # anyio.CancelScope() looks the backend up on every call; the backend's own class
        # (the same object anyio would build) is taken once, here, inside the event loop
        self._shield: type[anyio.CancelScope] = type(anyio.CancelScope())

    def __repr__(self) -> str:
        return f"<Transport {self.provider.name} {self.base_url}>"

    def subscribe(self, listener: Callable[[ConnectionFailedError], None]) -> Callable[[], None]:
        """Call ``listener(error)`` at every connection failure (nothing was sent), before any
        retry; returns the unsubscribe call."""
        self._not_sent_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._not_sent_listeners:
                self._not_sent_listeners.remove(listener)

        return unsubscribe

    def unreachable_deadline(self) -> float | None:
        """When a never-reached endpoint is given up on (clock seconds), or None (it answered
        once, or no connection failed yet)."""
        if self.reached or self._unreached_since is None:
            return None
        return self._unreached_since + UNREACHABLE_AFTER * self.time_scale

    def unreachable(self) -> EndpointUnreachableError | None:
        """The error to report once a never-reached endpoint's deadline has passed, else None."""
        deadline = self.unreachable_deadline()
        if deadline is None or _clock.now() < deadline:
            return None
        assert self._unreached_since is not None
        waited = (_clock.now() - self._unreached_since) / self.time_scale
        return EndpointUnreachableError(
            f"cannot reach {self.provider.name} at {self.base_url}: no request has reached it "
            f"in {waited:.0f} s ({self._unreached_why}); nothing was sent, so nothing was billed",
            url=self.base_url,
            provider=self.provider.name,
        )

    # -- public operations -------------------------------------------------------------------
    async def get_task(
        self, task_id: str, *, model: str | None = None, query: Mapping[str, str] | None = None
    ) -> Task:
        """Read a task, retrying transient failures."""
        return (await self.read_task(task_id, model=model, query=query))[0]

    async def read_task(
        self, task_id: str, *, model: str | None = None, query: Mapping[str, str] | None = None
    ) -> tuple[Task, str]:
        """Read a task, retrying transient failures; with the text of the task-status
        response it was parsed from (what a batch's journal keeps of a finished task).
        ``query``: the status query's parameters (``Provider.status_query``)."""
        if not isinstance(task_id, str) or not task_id.strip():
            raise ValidationError("task_id", task_id, "must be a non-empty string")
        path = "/v1/tasks/" + (task_id if _PLAIN_ID(task_id) else quote(task_id, safe=""))
        if query:
            path += "?" + urlencode(query)

        async def once() -> tuple[Task, str]:
            self.counters["polls"] += 1
            status, text = await self._send("GET", path, None, model=model, task_id=task_id)
            data = decode_json(text)
            if data is None:
                raise self.provider.malformed("task", text, status=status, task_id=task_id)
            return self.provider.parse_task(data, model=model), text

        return await self._with_retries(once, _read_retryable)

    async def submit(self, request: VideoRequest, body: dict[str, Any]) -> Task:
        """Create a task. Never resends a body the provider may have accepted (see module)."""

        async def once() -> Task:
            self.counters["submits"] += 1
            try:
                _, text = await self._send(
                    "POST", "/v1/videos/generations", body, model=request.model
                )
            except _NotSent:
                raise
            except (TransportError, ServerError) as exc:
                raise self._ambiguous(request, exc) from None
            data = decode_json(text)
            try:
                if data is None:
                    raise self.provider.malformed("submit", text, model=request.model)
                return self.provider.parse_submit(data, request)
            except APIError as exc:
                raise self._ambiguous(request, exc) from None

        task = await self._with_retries(once, self._submit_retryable)
        log.debug("submitted %s task %s (%s)", self.provider.name, task.id, request.model)
        return task

    # -- machinery ---------------------------------------------------------------------------
    def _submit_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, SubmissionUnknownError):
            return self.retry.resubmit_ambiguous
        return isinstance(exc, RateLimitError | _NotSent)

    def _ambiguous(self, request: VideoRequest, exc: Exception) -> SubmissionUnknownError:
        fingerprint = request.fingerprint()
        self.counters["ambiguous_submits"] += 1
        if self.retry.resubmit_ambiguous:
            log.warning(
                "submit of %s may have been accepted (%s); resubmitting as configured "
                "(fingerprint %s)",
                request.model,
                type(exc).__name__,
                fingerprint[:16],
            )
        return SubmissionUnknownError(
            f"the submit may have been accepted by {self.provider.name} but its answer was "
            f"lost ({type(exc).__name__}: {exc}); not resubmitted, to avoid paying twice. "
            f"Check the provider's task list for request fingerprint {fingerprint[:16]}",
            fingerprint=fingerprint,
            cause=exc,
            provider=self.provider.name,
            model=request.model,
        )

    async def _with_retries(
        self, once: Callable[[], Awaitable[T]], retryable: Callable[[BaseException], bool]
    ) -> T:
        # The first try runs directly: almost every request succeeds at once, and entering the
        # backoff machinery costs about as much as the rest of omnivid's work per request.
        # Only after a retryable failure is the backoff-driven loop built; it goes on from the
        # same wait schedule and counters as if it had driven the first try too.
        if self.retry.max_retries == 0:
            return await once()
        try:
            return await once()
        except Exception as exc:
            if not retryable(exc):
                raise
            first = exc
        try:
            if self._give_up(first):
                raise first
            waits = self.retry.waits()
            next(waits)  # primed, as backoff does
            wait = self._wait(first, waits.send(first))
            self._on_backoff(first, wait, 1)
            await asyncio.sleep(wait)  # what backoff sleeps with
            runner: Callable[[Callable[[], Awaitable[T]]], Awaitable[T]] = backoff.on_exception(
                _go_on(waits, self._wait),
                Exception,
                max_tries=self.retry.max_retries,
                jitter=None,
                giveup=lambda e: not retryable(e) or self._give_up(e),
                on_backoff=lambda d: self._on_backoff(
                    d.get("exception"), d.get("wait", 0.0), d.get("tries", 0) + 1
                ),
                logger=None,
            )(_call)
            return await runner(once)
        except _NotSent:
            unreachable = self.unreachable()
            if unreachable is None:
                raise
            raise unreachable from None

    def _wait(self, exc: BaseException | None, wait: float) -> float:
        """The back-off before the next try: scaled unless the server hinted it, and never
        past a never-reached endpoint's deadline."""
        if retry_hint(exc) is None:
            wait *= self.time_scale
        deadline = self.unreachable_deadline()
        if deadline is not None and isinstance(exc, _NotSent):
            wait = min(wait, max(0.0, deadline - _clock.now()))
        return wait

    def _give_up(self, exc: BaseException) -> bool:
        """True for a connection failure once the never-reached endpoint's deadline passed."""
        return isinstance(exc, _NotSent) and self.unreachable() is not None

    def _on_backoff(self, exc: BaseException | None, wait: float, tries: int) -> None:
        self.counters["retries"] += 1
        log.debug(
            "retrying %s after %s in %.3fs (try %d)",
            self.provider.name,
            type(exc).__name__,
            wait,
            tries,
        )

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        model: str | None,
        task_id: str | None = None,
    ) -> tuple[int, str]:
        if not self.gate.acquire_nowait():
            await self.gate.acquire()
        url = self.base_url + path
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            # a POST on the wire may create (and bill) a task: once sent, it is not cancelled
            # halfway, so its task id is learnt and recorded (bounded by ``timeouts``)
            with self._shield(shield=True) if method == "POST" else _NO_SCOPE:
                async with self.session.request(
                    method, url, json=body, headers=self._auth, timeout=self._timeout
                ) as resp:
                    text = await resp.text(errors="replace")
                    if self._secret and self._secret in text:
                        text = text.replace(self._secret, _REDACTED)
                    status = resp.status
                    headers = resp.headers  # case-insensitive
        except aiohttp.ClientConnectorError as exc:
            raise self._not_sent(exc.strerror or type(exc).__name__, model, task_id) from None
        except aiohttp.ConnectionTimeoutError:
            raise self._not_sent("timed out connecting", model, task_id) from None
        except TimeoutError:
            raise TransportTimeoutError(
                f"{method} {path} to {self.provider.name} timed out waiting for the answer",
                **self._context(model, task_id),
            ) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {path} to {self.provider.name} failed: {type(exc).__name__}",
                **self._context(model, task_id),
            ) from None
        self.reached = True
        request_id = headers.get("x-request-id")
        if debug:
            log.debug(
                "%s %s -> %d in %.1f ms (request id %s)",
                method,
                path,
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )
        if status != 429:
            self.gate.on_success()
            if status < 300:
                return status, text
        # a 429 or a 5xx (a 503, say) may tell when to come back; other 4xx are not retried
        hint = (
            parse_retry_after(headers.get("retry-after"))
            if status == 429 or status >= 500
            else None
        )
        if status == 429:
            self.counters["rate_limited"] += 1
            self.gate.on_rate_limited(hint, cap=self.retry.retry_after_cap)
        raise self.provider.error_from_response(
            status, text, retry_after=hint, request_id=request_id, model=model, task_id=task_id
        )

    def _not_sent(self, why: str, model: str | None, task_id: str | None) -> _NotSent:
        """A connection failure before anything was sent (noted while never reached)."""
        if not self.reached:
            self._unreached_why = why
            if self._unreached_since is None:
                self._unreached_since = _clock.now()
        error = _NotSent(
            f"cannot connect to {self.provider.name} at {self.base_url}: {why}",
            **self._context(model, task_id),
        )
        for listener in tuple(self._not_sent_listeners):
            listener(error)
        return error

    def _context(self, model: str | None, task_id: str | None) -> dict[str, Any]:
        """An error's context: provider, model and task id."""
        return {"provider": self.provider.name, "model": model, "task_id": task_id}


async def _call(once: Callable[[], Awaitable[T]]) -> T:
    return await once()


def _go_on(
    waits: Generator[float, BaseException | None, None],
    adjust: Callable[[BaseException | None, float], float],
) -> Callable[[], Generator[float, BaseException | None, None]]:
    """A ``backoff`` wait generator continuing ``waits`` (already sent the first failure),
    each wait passed through ``adjust(failure, wait)``."""

    def gen() -> Generator[float, BaseException | None, None]:
        exc = yield 0.0  # backoff primes it
        while True:
            exc = yield adjust(exc, waits.send(exc))

    return gen


def _read_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TransportError | RateLimitError | ServerError):
        return True
    return isinstance(exc, APIError) and exc.status < 300
