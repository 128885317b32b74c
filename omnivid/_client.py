"""``AsyncClient``: one provider account, one aiohttp session, every single-task operation."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import anyio.abc

from ._aio import clock as _clock
from ._aio.tasks import close_task_group, open_task_group
from ._http.download import download_task
from ._http.endpoint import resolve_base_url
from ._http.gate import AccountGate
from ._http.retry import RetryPolicy
from ._http.shared_gate import account_name
from ._http.transport import Timeouts, Transport
from ._models import Task, TaskStatus, VideoRequest
from ._polling import PollPolicy
from .batch._handles import Batch, MapRun
from .batch._job import BatchOptions
from .batch._policy import DEFAULT_RESUBMIT, ResubmitPolicy
from .errors import APIError, ConfigurationError, TaskFailedError, TaskTimeoutError
from .providers import CheckOptions, Provider, get_provider

if TYPE_CHECKING:
    from .batch._handles import BatchInput
    from .batch._outcome import Event
    from .batch._policy import CostEstimate
    from .integrations import CallbackReceiver
    from .journal import JournalBackend

__all__ = ["AsyncClient"]

log = logging.getLogger("omnivid")
_SUBMITTED_KEEP = 10_000  # submit times kept for ``watch`` (oldest dropped first)


class AsyncClient:
    """An async client for one provider account.

    Use it as ``async with AsyncClient("apimart") as client:``. It owns one aiohttp session
    (or borrows ``session`` and then leaves it open). Defaults: ``timeouts=Timeouts()``
    (connect 10 s, read 60 s, total 120 s), ``retry=RetryPolicy()`` (4 retries, full jitter,
    ``Retry-After`` capped at 120 s), ``poll=PollPolicy()`` (first poll after at least 5 s,
    waits from a server estimate alone capped at 30 s), ``max_connections=100``.

    ``api_key`` falls back to the provider's variable (``APIMART_API_KEY``,
    ``EVOLINK_API_KEY``); ``base_url`` to ``OMNIVID_APIMART_BASE_URL`` /
    ``OMNIVID_EVOLINK_BASE_URL``, then to the provider's public URL (a malformed one is a
    ``ConfigurationError`` naming where it came from). ``rate_limit`` (requests/s) starts the
    account's rate limiter; without it omnivid starts slowly (50 requests/s, doubling every two
    round trips, unlimited past 1,000/s) until the first 429, or from a rate learnt on an
    earlier run: ``client.gate.resume_from(rate)``, ``client.gate.learned_rate``;
    ``slow_start=False`` sends at once instead (for tests that time their first requests).
    ``time_scale`` scales every wait (polls, cooldowns), for simulators that run faster than
    real time.

    ``callbacks`` (a :class:`~omnivid.integrations.CallbackReceiver`, EvoLink only) gives each
    submit a callback URL with a per-task token; a verified callback wakes ``wait``/``watch``
    at once, and polling falls back to ``callbacks.fallback_poll`` unless ``poll`` is given.
    """

    def __init__(
        self,
        provider: str | Provider = "apimart",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        max_connections: int = 100,
        rate_limit: float | None = None,
        adaptive_rate: bool = True,
        slow_start: bool = True,
        time_scale: float = 1.0,
        allow_private_callbacks: bool = False,
        callbacks: CallbackReceiver | None = None,
    ) -> None:
        self.provider = get_provider(provider)
        if not time_scale > 0:
            raise ConfigurationError(
                f"time_scale={time_scale!r}: must be a positive number of real seconds per "
                "provider second",
                provider=self.provider.name,
            )
        key = api_key if api_key is not None else os.environ.get(self.provider.env_var)
        if not key:
            raise ConfigurationError(
                f"no API key for {self.provider.name}: pass api_key= or set "
                f"{self.provider.env_var}",
                provider=self.provider.name,
            )
        if not isinstance(key, str) or not (key.isascii() and key.isprintable()) or " " in key:
            where = "api_key" if api_key is not None else self.provider.env_var
            raise ConfigurationError(
                f"the API key for {self.provider.name} ({where}) holds whitespace, a newline or "
                "a character that cannot go in an HTTP header; check for a stray line break",
                provider=self.provider.name,
            )
        self._api_key = key
        self.base_url = resolve_base_url(self.provider, base_url)
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.time_scale = time_scale
        if poll is None and callbacks is not None:
            poll = callbacks.fallback_poll
        self.poll = (
            (poll or PollPolicy()).scaled(time_scale)
            if time_scale != 1.0
            else (poll or PollPolicy())
        )
        self.max_connections = max_connections
        ramp: dict[str, Any] = {} if slow_start else {"start_rate": None}
        self.gate = AccountGate(
            rate=rate_limit, adaptive=adaptive_rate, time_scale=time_scale, **ramp
        )
        self.check_options = CheckOptions(allow_private_callbacks=allow_private_callbacks)
        self._session = session
        self._owns_session = session is None
        self._transport: Transport | None = None
        self._nudges: dict[str, anyio.Event] = {}
        # submit time per task id, read by the first poll of a later ``watch``; bounded, since
        # callers that never ``watch`` (``map``, their own polling loops) never remove theirs
        self._submitted_at: OrderedDict[str, float] = OrderedDict()
        self._nudge_listeners: list[Callable[[str], bool]] = []  # batch pollers
        self._services: anyio.abc.TaskGroup | None = None  # hosts `async for` over map()
        self.callbacks = callbacks
        if callbacks is not None:
            callbacks.attach(self)

    def __repr__(self) -> str:
        return f"<AsyncClient provider={self.provider.name!r} base_url={self.base_url!r}>"

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
        self._transport = Transport(
            provider=self.provider,
            api_key=self._api_key,
            base_url=self.base_url,
            session=self._session,
            timeouts=self.timeouts,
            retry=self.retry,
            gate=self.gate,
            time_scale=self.time_scale,
        )
        if self.callbacks is not None:
            self.callbacks.attach(self)
        self._services = await open_task_group()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        services, self._services = self._services, None
        try:
            # batches iterated without `async with` end with the client
            await close_task_group(services)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._transport = None
        if self.callbacks is not None:
            self.callbacks.detach(self)

    @property
    def transport(self) -> Transport:
        """The open transport; a ``ConfigurationError`` outside ``async with``."""
        if self._transport is None:
            raise ConfigurationError(
                "the client is not open: use `async with AsyncClient(...) as client:`",
                provider=self.provider.name,
            )
        return self._transport

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session in use."""
        return self.transport.session

    @property
    def account(self) -> str:
        """This account's name where workers share its rate limit: the provider, the base
        URL and a digest of the key (never the key)."""
        return account_name(self.provider.name, self.base_url, self._api_key)

    def statistics(self) -> dict[str, int]:
        """Counts of HTTP work so far: submits, polls, retries, rate_limited, ambiguous."""
        return dict(self._transport.counters) if self._transport else {}

    # -- single tasks ------------------------------------------------------------------------
    def validate(self, request: VideoRequest) -> None:
        """Check ``request`` against the provider's rules, without any network traffic."""
        self.provider.validate(request, self.check_options)

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        """The exact JSON body ``submit`` would send (validated; local files read)."""
        return self.provider.build_submit_body(request, self.check_options)

    async def submit(self, request: VideoRequest, *, body: dict[str, Any] | None = None) -> Task:
        """Validate and submit ``request``; returns the new (pending) task.

        Raises ``ValidationError`` before any traffic, ``SubmissionUnknownError`` when the
        provider may have accepted it but the answer was lost (it is then not resubmitted).
        """
        transport = self.transport
        if body is None:
            body = self.build_body(request)
        token = None
        if self.callbacks is not None:
            token, body = self.callbacks.prepare(request.fingerprint(), body)
        try:
            task = await transport.submit(request, body)
        except BaseException as exc:
            if token is not None and self.callbacks is not None:
                # only an API error answer proves the provider did not create the task
                ambiguous = not isinstance(exc, APIError)
                self.callbacks.submit_failed(token, ambiguous=ambiguous)
            raise
        self._submitted_at[task.id] = _clock.now()
        if len(self._submitted_at) > _SUBMITTED_KEEP:
            self._submitted_at.popitem(last=False)
        if token is not None and self.callbacks is not None:
            with anyio.CancelScope(shield=True):
                await self.callbacks.bind(task.id, token)
        return task

    async def get(self, task_id: str, *, language: str | None = None) -> Task:
        """The task's current state. ``language``: the language of the provider's messages
        (APIMart: ``zh``, ``en``, ``ko`` or ``ja``; checked before any request)."""
        query = self.provider.status_query(language)
        return await self.transport.get_task(task_id, query=query)

    def nudge(self, task_id: str) -> bool:
        """Poll ``task_id`` now in any ``wait``/``watch`` on it (a callback arrived); True
        when someone was waiting."""
        event = self._nudges.pop(task_id, None)
        if event is not None:
            event.set()
        woken = [listener(task_id) for listener in tuple(self._nudge_listeners)]
        return event is not None or any(woken)

    async def sleep_until_due(self, task_id: str, delay: float) -> bool:
        """Sleep ``delay`` seconds or until ``nudge(task_id)``; True when nudged (also at once
        when a callback for it was confirmed before anyone waited)."""
        if self.callbacks is not None and self.callbacks.take_wake(task_id):
            return True
        event = self._nudges.setdefault(task_id, anyio.Event())
        with anyio.move_on_after(delay):
            await event.wait()
            return True
        return False

    async def watch(self, task: Task | str, *, language: str | None = None) -> AsyncIterator[Task]:
        """Yield snapshots of the task whenever its status or progress changes, ending with the
        terminal one. Polls follow ``self.poll`` (server-hinted, jittered, capped);
        ``language`` as in :meth:`get`."""
        self.provider.status_query(language)  # a bad language fails before any request
        if isinstance(task, str):
            current = await self.get(task, language=language)
            started = anyio.current_time()
            yield current
            first = False
        else:
            current = task
            started = self._submitted_at.get(task.id, anyio.current_time())
            yield current
            first = True
        spec = self.provider.models.get(current.model or "")
        default_estimate = spec.typical_seconds if spec else 60.0
        try:
            while not current.is_terminal:
                delay = self.poll.next_delay(
                    current,
                    anyio.current_time() - started,
                    first=first,
                    default_estimate=default_estimate,
                )
                first = False
                await self.sleep_until_due(current.id, delay)
                latest = await self.get(current.id, language=language)
                if latest.model is None and current.model is not None:
                    latest = _with_model(latest, current.model)
                if latest.status != current.status or latest.progress != current.progress:
                    yield latest
                current = latest
        finally:
            # whether it ended, timed out or was cancelled: keep no per-task state behind
            self._submitted_at.pop(current.id, None)
            self._nudges.pop(current.id, None)

    async def wait(
        self, task: Task | str, *, timeout: float | None = None, language: str | None = None
    ) -> Task:
        """Poll until the task is terminal and return it (completed, failed or cancelled).

        ``timeout`` (seconds) raises ``TaskTimeoutError`` carrying the last snapshot; the task
        itself goes on at the provider. ``language`` as in :meth:`get`.
        """
        self.provider.status_query(language)  # a bad language fails before any request
        last: Task | None = task if isinstance(task, Task) else None
        task_id = task.id if isinstance(task, Task) else task
        with anyio.move_on_after(timeout) as scope:
            async for snapshot in self.watch(task, language=language):
                last = snapshot
        if scope.cancelled_caught or last is None or not last.is_terminal:
            raise TaskTimeoutError(
                f"task not finished after {timeout} s; it is still running at the provider",
                task=last,
                provider=self.provider.name,
                model=last.model if last else None,
                task_id=task_id,
            )
        return last

    async def generate(self, request: VideoRequest, *, timeout: float | None = None) -> Task:
        """Submit and wait. Returns the completed task; ``TaskFailedError`` otherwise."""
        task = await self.submit(request)
        done = await self.wait(task, timeout=timeout)
        if done.status is not TaskStatus.COMPLETED:
            raise TaskFailedError(done)
        return done

    # -- batches -----------------------------------------------------------------------------
    def map(
        self,
        requests: BatchInput,
        *,
        max_in_flight: int = 16,
        max_cost: float | None = None,
        deadline: float | None = None,
        resubmit: ResubmitPolicy | None = DEFAULT_RESUBMIT,
        journal: str | os.PathLike[str] | JournalBackend | None = None,
        resubmit_ambiguous: bool = False,
        on_event: Callable[[Event], None] | None = None,
        cost_estimate: CostEstimate | None = None,
        prefetch: int | None = None,
        batch: str | None = None,
    ) -> MapRun:
        """Run many requests; outcomes come back as they complete. See :class:`~omnivid.MapRun`.

        ``requests``: an iterable or async iterable of ``VideoRequest`` or ``(key, request)``
        pairs, pulled lazily. ``max_in_flight``: tasks submitted and not finished, at most.
        ``max_cost``: budget in the provider's billing unit, spent plus reserved. With a
        ``journal`` it caps the spend over every run of that journal (a killed run's
        reservations included: see ``BatchStats.cost_spent_total``); without one it covers
        this call only. ``deadline``: provider seconds a
        task may run after its submit (scaled by ``time_scale``). ``resubmit``: which failed
        tasks are submitted again (None: never). ``journal``: a path or ``Journal`` making the
        batch resumable. ``resubmit_ambiguous``: resubmit jobs whose submit may have been
        accepted. ``on_event``: called with every :class:`~omnivid.Event`.
        ``cost_estimate``: per-job cost reserved by ``max_cost`` (default: the model's).
        ``prefetch``: jobs pulled ahead of the in-flight limit (default min(max_in_flight,
        64), at least 8).

        **Scaling out.** ``journal="postgresql://USER@HOST:PORT/DB"`` with ``batch="NAME"``
        (or an opened ``omnivid.journal.PostgresJournal``) shares the batch with every process
        running it, on any host: each job is claimed by one worker at a time (a lease renewed
        by heartbeat) and submitted once; every worker's map yields an outcome for every job
        (those run elsewhere ``from_journal``, ``Outcome.worker`` naming who ran them);
        ``max_cost`` caps the whole batch over every worker; the account's rate limit and 429
        cooldowns are shared through the same database. A database that cannot be reached
        stops the submits (``DatabaseUnavailableError``). See the README's "Scaling out".

        A submit answered 401 or 402 stops the account's further submits, a 403 those of its
        model, and an endpoint no request ever reached is given up on about 30 provider
        seconds after its first failure: the jobs not sent end ``not_submitted`` with that
        cause (``BatchStats.stopped`` says why) while running tasks are still polled::

            async with client.map(requests, max_in_flight=32) as outcomes:
                async for outcome in outcomes:
                    print(outcome.key, outcome.ok, outcome.task_id)
        """
        return MapRun(
            self,
            requests,
            BatchOptions(
                max_in_flight=max_in_flight,
                max_cost=max_cost,
                deadline=deadline,
                resubmit=resubmit,
                journal=journal,
                resubmit_ambiguous=resubmit_ambiguous,
                on_event=on_event,
                cost_estimate=cost_estimate,
                prefetch=prefetch,
                batch=batch,
            ),
        )

    def open_batch(
        self,
        *,
        max_in_flight: int = 16,
        max_cost: float | None = None,
        deadline: float | None = None,
        resubmit: ResubmitPolicy | None = DEFAULT_RESUBMIT,
        journal: str | os.PathLike[str] | JournalBackend | None = None,
        resubmit_ambiguous: bool = False,
        on_event: Callable[[Event], None] | None = None,
        cost_estimate: CostEstimate | None = None,
        prefetch: int | None = None,
        batch: str | None = None,
    ) -> Batch:
        """A batch to add requests to while its outcomes stream (settings as in :meth:`map`)::

        async with client.open_batch(max_in_flight=8) as batch:
            batch.add(request, key="intro")
            batch.close()  # no more requests: iteration ends after the last outcome
            async for outcome in batch:
                ...
        """
        return Batch(
            self,
            BatchOptions(
                max_in_flight=max_in_flight,
                max_cost=max_cost,
                deadline=deadline,
                resubmit=resubmit,
                journal=journal,
                resubmit_ambiguous=resubmit_ambiguous,
                on_event=on_event,
                cost_estimate=cost_estimate,
                prefetch=prefetch,
                batch=batch,
            ),
        )

    async def download(
        self, task: Task | str, dest: str | os.PathLike[str], *, overwrite: bool = False
    ) -> list[Path]:
        """Save the task's videos into the directory ``dest``; returns their paths.

        Each file streams to ``NAME.part`` and is renamed only when complete; an interrupted
        transfer resumes with a ``Range`` request. Downloading again is harmless: a file already
        there whole (checked by the small sidecar ``.NAME.omnivid`` beside it, or by its size
        on the server) is returned as it is; any other existing file is a ``DownloadError``
        unless ``overwrite``, which downloads it again.
        """
        if isinstance(task, str):
            task = await self.get(task)
        return await download_task(
            self.session,
            task,
            dest,
            overwrite=overwrite,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
            ),
        )


def _with_model(task: Task, model: str) -> Task:
    import attrs

    return attrs.evolve(task, model=model)
