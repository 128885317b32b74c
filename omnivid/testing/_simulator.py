"""The simulator: one loopback aiohttp server speaking both providers' wire formats."""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import hashlib
import json
import math
import random
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import attrs
from aiohttp import web
from anyio.abc import TaskGroup

from .._aio.tasks import close_task_group, open_task_group
from ._config import APIMART, DEFAULT_DURATIONS, PROVIDERS, FaultConfig, SimConfig
from ._markers import FaultMarker, Markers, parse_markers
from ._media import video_bytes
from ._state import Ledger, SimClock, SimTask, TaskStore, TokenBuckets, format_retry_after
from ._stats import CallbackAttempt, RequestRecord, SimStats, fingerprint
from ._validation import Accepted, validate
from ._wire import (
    JSON,
    ApiError,
    apimart_submit,
    apimart_task,
    error_body,
    error_status,
    evolink_submit,
    evolink_task,
)

if TYPE_CHECKING:
    from .._client import AsyncClient

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EVOLINK_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
_MIN_CALLBACK_TIMEOUT = 0.5
_MAX_BODY = 64 * 1024 * 1024
_PROVIDER_RE = "|".join(PROVIDERS)


@attrs.define
class _Faults:
    """The faults one request will suffer."""

    pre: str | None = None  # "reset", "429" or a 5xx status: answered without processing
    lost_response: bool = False
    slow: float = 0.0
    malformed: bool = False
    truncate: bool = False


@attrs.define
class _Exchange:
    """Per-request bookkeeping shared by the middleware, the handler and the prepare hook."""

    request_id: str = attrs.field(factory=lambda: f"req_{uuid.uuid4().hex}")
    dropped: bool = False


_EXCHANGE: contextvars.ContextVar[_Exchange] = contextvars.ContextVar("omnivid_sim_exchange")


@attrs.define
class _Reply:
    status: int
    body: JSON | None = None
    text: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    drop: str | None = None  # "reset" or "close"


class Simulator:
    """A running simulator of APIMart and EvoLink; use as ``async with Simulator() as sim``.

    ``Simulator(config, faults=..., **options)``: ``options`` are `SimConfig` or `FaultConfig`
    field names, overriding ``config`` (``Simulator(time_scale=0.001, error_5xx_rate=0.1)``).
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        faults: FaultConfig | None = None,
        **options: Any,
    ) -> None:
        fault_fields = {field.name for field in attrs.fields(FaultConfig)}
        fault_options = {k: v for k, v in options.items() if k in fault_fields}
        config_options = {k: v for k, v in options.items() if k not in fault_fields}
        config, faults = config or SimConfig(), faults or FaultConfig()
        self.config: SimConfig = (
            attrs.evolve(config, **config_options) if config_options else config
        )
        self.faults: FaultConfig = (
            attrs.evolve(faults, **fault_options) if fault_options else faults
        )
        self.stats = SimStats()
        self.request_log: list[RequestRecord] = []
        self._rng = random.Random(self.config.seed)
        self._clock = SimClock(self.config.time_scale)
        self._store = TaskStore()
        self._ledger = Ledger()
        self._buckets = TokenBuckets()
        self._marker_hits: dict[tuple[str, str, str], int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake: asyncio.Event | None = None
        self._tg: TaskGroup | None = None
        self._deliveries = 0
        self._deliveries_done = anyio.Event()
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind the server and start driving task lifecycles."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._clock = SimClock(self.config.time_scale)
        runner = web.AppRunner(
            self._build_app(), access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        self._wake = asyncio.Event()
        self._tg = tg = await open_task_group()
        tg.start_soon(self._drive, name="omnivid-sim-driver")

    async def close(self) -> None:
        """Stop serving, cancel pending callbacks and release every resource."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        tg, self._tg = self._tg, None
        await close_task_group(tg)  # the driver and pending callback deliveries
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.config.host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL to give a client for ``provider`` ("apimart" or "evolink")."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        return f"{self.url}/{provider}"

    @property
    def api_key(self) -> str:
        """A key the simulator accepts."""
        return self.config.default_api_key

    def now(self) -> float:
        """The simulated unix time."""
        return self._clock.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward: tasks end and URLs expire as if it had passed."""
        self._clock.advance(seconds)
        self._tick()
        if self._wake is not None:
            self._wake.set()

    def configure(self, **changes: Any) -> None:
        """Change `FaultConfig` or `SimConfig` fields at run time (validated)."""
        fault_fields = {field.name for field in attrs.fields(FaultConfig)}
        config_fields = {field.name for field in attrs.fields(SimConfig)}
        for name, value in changes.items():
            if name in fault_fields:
                setattr(self.faults, name, value)
            elif name in ("host", "port", "seed", "time_scale"):
                raise ValueError(f"{name} is fixed once the simulator exists")
            elif name in config_fields:
                setattr(self.config, name, value)
            else:
                raise TypeError(f"unknown simulator setting {name!r}")

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (tasks in flight go on and are counted)."""
        self.stats = SimStats(max_in_flight={k: v for k, v in self._store.in_flight.items() if v})
        self.request_log.clear()

    def task_status(self, task_id: str) -> str | None:
        """The current status of a task ("pending", ..., "completed"), None if unknown."""
        task = self._store.get(task_id)
        return None if task is None else task.view(self._clock.now(), ()).status

    def in_flight(self, api_key: str | None = None) -> int:
        """Non-terminal tasks of ``api_key`` (default: `api_key`)."""
        return self._store.in_flight.get(api_key or self.api_key, 0)

    def balance(self, api_key: str) -> float | None:
        """Budget left for ``api_key`` (held amounts excluded), None if it has no budget."""
        budget = self.config.budgets.get(api_key)
        return None if budget is None else self._ledger.remaining(api_key, budget)

    async def wait_idle(self) -> None:
        """Wait until every task has ended and every callback delivery (retries included) is over.

        Waits as long as the tasks take (in scaled time), so use it with a small time_scale.
        """
        while (next_end := self._store.next_end()) is not None:
            delay = self._clock.real_seconds(next_end - self._clock.now())
            await asyncio.sleep(max(0.0, delay) + 0.001)
            self._tick()
        while self._deliveries:
            await self._deliveries_done.wait()

    def client(self, provider: str, **options: Any) -> AsyncClient:
        """An unopened ``omnivid.AsyncClient`` on this simulator (``async with`` it).

        It gets this simulator's base URL, `api_key` and time scale (and may send loopback
        callback URLs if the simulator accepts them); ``options`` override or add settings.
        """
        from .._client import AsyncClient

        settings: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url(provider),
            "time_scale": self._clock.time_scale,
            "allow_private_callbacks": self.config.allow_loopback_callbacks,
        }
        settings.update(options)
        return AsyncClient(provider, **settings)

    def file_url(self, task_id: str, index: int = 0) -> str:
        """The URL of a task's result file."""
        return f"{self.url}/files/{task_id}/{index}.mp4"

    # -- server plumbing ---------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=_MAX_BODY)
        app.on_response_prepare.append(self._on_prepare)
        router = app.router
        router.add_post(f"/{{provider:{_PROVIDER_RE}}}/v1/videos/generations", self._handle_submit)
        router.add_get(f"/{{provider:{_PROVIDER_RE}}}/v1/tasks/{{task_id}}", self._handle_task)
        router.add_get(r"/files/{task_id}/{index:\d+}.mp4", self._handle_file)
        router.add_get("/_sim/stats", self._handle_stats)
        router.add_post("/_sim/config", self._handle_config)
        router.add_post("/_sim/reset", self._handle_reset)
        router.add_post("/_sim/advance", self._handle_advance)
        return app

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        exchange = _Exchange()
        _EXCHANGE.set(exchange)
        self._tick()
        status = 500
        try:
            response = await handler(request)
            status = 0 if exchange.dropped else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:  # client gone (or server closing) mid-answer
            status = 0
            raise
        finally:
            if not request.path.startswith("/_sim/"):
                self.request_log.append(
                    RequestRecord(arrived, request.method, request.path, status)
                )
                counts = self.stats.status_counts
                counts[status] = counts.get(status, 0) + 1
                if status == 429:
                    self.stats.rate_limited += 1

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        exchange = _EXCHANGE.get(None)
        if exchange is not None:
            response.headers.setdefault("X-Request-Id", exchange.request_id)

    async def _drive(self) -> None:
        """Finish tasks (and fire their callbacks) when they are due, even if nobody polls."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            self._tick()
            next_end = self._store.next_end()
            delay = None
            if next_end is not None:
                delay = max(0.0, self._clock.real_seconds(next_end - self._clock.now()))
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _tick(self) -> None:
        for task in self._store.advance(self._clock.now(), self.config.url_ttl):
            self._on_task_end(task)

    def _on_task_end(self, task: SimTask) -> None:
        cost, credits = task.charged
        self._ledger.settle(task.api_key, task.held, cost)
        stats = self.stats
        stats.total_cost += cost
        stats.total_credits += credits
        stats.cost_by_key[task.api_key] = stats.cost_by_key.get(task.api_key, 0.0) + cost
        if task.callback_url and self._session is not None and self._tg is not None:
            self._deliveries += 1
            self._tg.start_soon(self._deliver_callback_tracked, task)

    async def _deliver_callback_tracked(self, task: SimTask) -> None:
        try:
            await self._deliver_callback(task)
        finally:
            self._deliveries -= 1
            if not self._deliveries:
                self._deliveries_done.set()
                self._deliveries_done = anyio.Event()

    async def _deliver_callback(self, task: SimTask) -> None:
        """POST the task body to its callback URL; retry after 1, 2, 4 s (scaled) on failure."""
        assert task.callback_url is not None and self._session is not None
        body = evolink_task(task.view(self._clock.now(), self._urls(task)))
        timeout = aiohttp.ClientTimeout(
            total=max(_MIN_CALLBACK_TIMEOUT, self._clock.real_seconds(self.config.callback_timeout))
        )
        for delay in (0.0, *self.config.callback_retry_delays):
            if delay:
                await asyncio.sleep(self._clock.real_seconds(delay))
            started = time.monotonic()
            result: int | str
            try:
                async with self._session.post(
                    task.callback_url, json=body, timeout=timeout
                ) as resp:
                    result = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                result = f"{type(exc).__name__}: {exc}"
            self.stats.callbacks.append(CallbackAttempt(task.callback_url, result, started))
            if isinstance(result, int) and 200 <= result < 300:
                return

    # -- faults --------------------------------------------------------------------------------

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _draw_faults(
        self, faults: _Faults, stage: str, scope: str, markers: tuple[FaultMarker, ...]
    ) -> None:
        """Decide one request's faults: its markers first, then the configured probabilities."""
        for marker in markers:
            hit = (stage, scope, marker.text)
            if self._marker_hits.get(hit, 0) >= marker.times:
                continue
            self._marker_hits[hit] = self._marker_hits.get(hit, 0) + 1
            if marker.kind == "lost-response":
                faults.lost_response = True
            elif marker.kind == "slow":
                faults.slow = marker.arg if marker.arg is not None else self.faults.slow_seconds
            elif marker.kind == "malformed":
                faults.malformed = True
            elif marker.kind == "truncate-download":
                faults.truncate = True
            else:  # "reset", "429" or a 5xx status
                faults.pre = faults.pre or marker.kind
        config = self.faults
        if stage == "download":
            faults.truncate = faults.truncate or self._chance(config.truncate_download_rate)
        else:
            if faults.pre is None:
                if self._chance(config.reset_rate):
                    faults.pre = "reset"
                elif self._chance(config.error_5xx_rate):
                    faults.pre = str(self._rng.choice(config.error_5xx_statuses))
                elif self._chance(config.rate_limit_rate):
                    faults.pre = "429"
            if stage == "submit" and self._chance(config.lost_response_rate):
                faults.lost_response = True
            if not faults.slow and self._chance(config.slow_rate):
                faults.slow = config.slow_seconds
            faults.malformed = faults.malformed or self._chance(config.malformed_rate)
        for kind, active in (
            (faults.pre or "", faults.pre is not None),
            ("lost-response", faults.lost_response),
            ("slow", bool(faults.slow)),
            ("malformed", faults.malformed),
            ("truncate-download", faults.truncate),
        ):
            if active:
                self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1

    def _pre_fault_reply(self, provider: str, pre: str) -> _Reply:
        if pre == "reset":
            return _Reply(0, drop="reset")
        if pre == "429":
            return self._error_reply(provider, ApiError("rate_limited"))
        status = int(pre)
        if status == 500:
            return self._error_reply(provider, ApiError("internal"))
        reason = _REASONS.get(status, "Server Error")
        page = _GATEWAY_PAGE.format(status=status, reason=reason)
        return _Reply(status, text=page, headers={"Content-Type": "text/html"})

    # -- API handlers --------------------------------------------------------------------------

    def _error_reply(self, provider: str, error: ApiError, model: str = "") -> _Reply:
        headers = {}
        if error.kind == "rate_limited" and self.config.retry_after is not None:
            seconds = self.config.retry_after_seconds
            if self.config.retry_after == "seconds":
                headers["Retry-After"] = format_retry_after(seconds)
            else:
                when = math.ceil(time.time() + seconds)
                headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
        body = error_body(provider, error, language=self.config.language, model=model)
        return _Reply(error_status(error), body=body, headers=headers)

    def _admit(self, request: web.Request) -> str:
        """The request's API key, if it is accepted and within its rate limit."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        allowed = self.config.api_keys
        if scheme.lower() != "bearer" or not key or (allowed is not None and key not in allowed):
            raise ApiError("unauthorized")
        rps = self.config.rps
        if rps is not None:
            burst = self.config.burst or max(1.0, rps)
            if not self._buckets.take(key, rps, burst):
                raise ApiError("rate_limited")
        return key

    async def _send(self, request: web.Request, reply: _Reply, faults: _Faults) -> web.Response:
        if faults.slow:
            await asyncio.sleep(faults.slow)
        if faults.lost_response and reply.drop is None:
            reply.drop = "close"
        if reply.drop is not None:
            return self._drop(request, reset=reply.drop == "reset")
        headers = dict(reply.headers)
        if reply.body is not None:
            text = json.dumps(reply.body, ensure_ascii=False)
            if faults.malformed:
                text = text[: len(text) // 2]
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        else:
            text = reply.text or ""
        return web.Response(status=reply.status, body=text.encode(), headers=headers)

    def _drop(self, request: web.Request, *, reset: bool) -> web.Response:
        """Close the connection without answering (TCP RST if ``reset``)."""
        _EXCHANGE.get().dropped = True
        transport = request.transport
        if transport is not None:
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with suppress(OSError):
                        linger = struct.pack("ii", 1, 0)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                transport.abort()
            else:
                transport.close()
        return web.Response(status=500)

    async def _handle_submit(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        self.stats.submits += 1
        faults = _Faults()
        try:
            key = self._admit(request)
            reply = await self._submit(request, provider, key, faults)
        except ApiError as error:
            reply = self._error_reply(provider, error)
        return await self._send(request, reply, faults)

    async def _submit(
        self, request: web.Request, provider: str, key: str, faults: _Faults
    ) -> _Reply:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        prompt = body.get("prompt") if isinstance(body, dict) else None
        markers = parse_markers(prompt) if isinstance(prompt, str) else Markers()
        fp = fingerprint(body) if isinstance(body, dict) else ""
        self._draw_faults(faults, "submit", fp, markers.for_stage("submit"))
        if faults.pre is not None:
            return self._pre_fault_reply(provider, faults.pre)
        accepted = validate(
            provider, body, allow_loopback_callbacks=self.config.allow_loopback_callbacks
        )
        assert isinstance(body, dict)
        if accepted.model in self.config.denied_models.get(key, ()):
            return self._error_reply(provider, ApiError("model_access_denied"), accepted.model)
        if accepted.extend_from_task_id is not None:
            earlier = self._store.get(accepted.extend_from_task_id)
            if earlier is None or earlier.api_key != key or earlier.status != "completed":
                raise ApiError("invalid_request", "extend_from_task_id is not a completed task")
        limit = self.config.max_concurrent_tasks
        if limit is not None and self._store.in_flight.get(key, 0) >= limit:
            raise ApiError("rate_limited")
        task = self._new_task(provider, key, accepted, markers)
        budget = self.config.budgets.get(key)
        if budget is not None and task.held > self._ledger.remaining(key, budget) + 1e-9:
            raise ApiError("insufficient_quota")
        self._ledger.hold(key, task.held)
        in_flight = self._store.add(task)
        stats = self.stats
        stats.max_in_flight[key] = max(stats.max_in_flight.get(key, 0), in_flight)
        stats.tasks.append(task.id)
        stats.tasks_by_fingerprint[fp] = stats.tasks_by_fingerprint.get(fp, 0) + 1
        if self._wake is not None:
            self._wake.set()
        if provider == APIMART:
            return _Reply(200, body=apimart_submit(task.id))
        return _Reply(200, body=evolink_submit(task.view(task.created, ())))

    def _new_task(self, provider: str, key: str, accepted: Accepted, markers: Markers) -> SimTask:
        config, rng = self.config, self._rng
        now = self._clock.now()
        model = accepted.model
        if markers.duration is not None:
            duration = markers.duration
        elif config.instant:
            duration = 0.0
        else:
            duration = rng.uniform(*config.durations.get(model, DEFAULT_DURATIONS[model]))
        if config.estimate_error is not None:
            error = config.estimate_error
            estimated = round(duration * rng.uniform(1 - error, 1 + error))
        else:
            estimated = round(config.estimated_times.get(model, duration))
        outcome = markers.outcome or self._draw_outcome()
        task = SimTask(
            id="",
            provider=provider,
            model=model,
            api_key=key,
            created=now,
            duration=duration,
            estimated_time=estimated,
            markers=markers,
            outcome=outcome,
            callback_url=accepted.callback_url,
        )
        if provider == APIMART:
            millis = int(now * 1000) & (2**48 - 1)
            value = (millis << 80) | rng.getrandbits(80)
            task.id = "task_" + "".join(_CROCKFORD[(value >> s) & 31] for s in range(125, -1, -5))
            cost, credits = config.apimart_costs.get(model, (0.0, 0))
            task.price = (cost, credits)
            task.held = cost
            task.video_duration = accepted.duration or 6
        else:
            suffix = "".join(rng.choice(_EVOLINK_ID_CHARS) for _ in range(8))
            task.id = f"task-unified-{int(now)}-{suffix}"
            task.video_duration = accepted.duration or rng.randint(3, 10)
            per_second = config.evolink_credits_per_second
            task.credits_reserved = round(per_second * (accepted.duration or 10), 2)
            credits_used = round(per_second * task.video_duration, 2)
            task.price = (round(credits_used * config.evolink_credit_price, 6), credits_used)
            task.held = round(task.credits_reserved * config.evolink_credit_price, 6)
        return task

    def _draw_outcome(self) -> str | None:
        config = self.faults
        for cause, rate in (
            ("quota", config.fail_quota_rate),
            ("moderation", config.fail_moderation_rate),
            ("timeout", config.fail_timeout_rate),
            ("cancel", config.cancel_rate),
        ):
            if self._chance(rate):
                return cause
        return None

    def _urls(self, task: SimTask) -> tuple[str, ...]:
        return (self.file_url(task.id),) if self._port is not None else ()

    async def _handle_task(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        self.stats.polls += 1
        faults = _Faults()
        try:
            key = self._admit(request)
            task = self._store.get(request.match_info["task_id"])
            if task is not None and (task.provider != provider or task.api_key != key):
                task = None
            markers = task.markers.for_stage("poll") if task is not None else ()
            self._draw_faults(faults, "poll", task.id if task else "", markers)
            if faults.pre is not None:
                reply = self._pre_fault_reply(provider, faults.pre)
            elif task is None:
                reply = self._error_reply(provider, ApiError("not_found"))
            else:
                view = task.view(self._clock.now(), self._urls(task))
                body = (
                    apimart_task(view, self.config.url_form)
                    if provider == APIMART
                    else evolink_task(view)
                )
                reply = _Reply(200, body=body)
        except ApiError as error:
            reply = self._error_reply(provider, error)
        return await self._send(request, reply, faults)

    # -- result files --------------------------------------------------------------------------

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        self.stats.downloads += 1
        task = self._store.get(request.match_info["task_id"])
        index = int(request.match_info["index"])
        if task is None or task.status != "completed" or index != 0:
            return web.json_response(
                {"error": {"code": "not_found", "message": "No such file"}}, status=404
            )
        assert task.expires_at is not None
        if self._clock.now() > task.expires_at:
            return web.json_response(
                {"error": {"code": "url_expired", "message": "This result URL has expired"}},
                status=403,
            )
        data = video_bytes(f"{task.id}/{index}")
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
        if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        status, part = 200, data
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range == etag):
            try:
                span = _parse_range(range_header, len(data))
            except ValueError:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return web.Response(status=416, headers=headers)
            if span is not None:
                start, end = span
                status, part = 206, data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        faults = _Faults()
        self._draw_faults(faults, "download", task.id, task.markers.for_stage("download"))
        if not faults.truncate or request.method == "HEAD":
            return web.Response(status=status, body=part, headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(part)
        await response.prepare(request)
        await response.write(part[: len(part) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    # -- control endpoints (for out-of-process use) --------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        data = self.stats.to_json()
        data["in_flight"] = {k: v for k, v in self._store.in_flight.items() if v}
        data["now"] = self._clock.now()
        return web.json_response(data)

    async def _handle_config(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object of settings")
            self.configure(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def _handle_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def _handle_advance(self, request: web.Request) -> web.StreamResponse:
        try:
            seconds = float((await request.json())["seconds"])
            self.advance(seconds)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True, "now": self._clock.now()})


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` of a single ``bytes=`` range.

    Returns None for what this server does not handle (multiple ranges, other units, nonsense):
    the whole file is sent, as RFC 9110 allows. Raises ValueError if unsatisfiable (416).
    """
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None
    if not first:
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    if start >= size or end < start:
        raise ValueError("range outside the file")
    return start, end
