"""The simulator: one loopback aiohttp server speaking both providers' wire formats.

This module holds `Simulator`, the server and its lifecycle: starting and closing the server,
the driver that ends tasks when they are due in simulated time (``time_scale`` real seconds per
simulated second), the public API tests use (URLs, settings, stats, ``advance``,
``wait_idle``, ``client``), the middleware that logs and counts every API request, and the
``/_sim/`` control endpoints. The routes it serves are in ``_api`` (the providers' submit and
poll) and ``_files`` (result videos); they share the `SimState` of ``_state`` with it. Faults
and rate limits are drawn in ``_faults``, answers are written by ``_replies`` and callbacks are
delivered by ``_callbacks``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

import anyio
import attrs
from aiohttp import web
from anyio.abc import TaskGroup

from .._aio.tasks import close_task_group, open_task_group
from .._client import AsyncClient
from ._api import ApiRoutes
from ._callbacks import Callbacks
from ._config import PROVIDERS, FaultConfig, SimConfig
from ._files import FileServer
from ._persist import StateFile
from ._replies import EXCHANGE, Exchange, add_request_id
from ._state import SimClock, SimState, SimTask
from ._stats import RequestRecord, SimStats

_MAX_BODY = 64 * 1024 * 1024
_PROVIDER_RE = "|".join(PROVIDERS)


class Simulator:
    """A running simulator of APIMart and EvoLink; use as ``async with Simulator() as sim``.

    ``Simulator(config, faults=..., **options)``: ``options`` are `SimConfig` or `FaultConfig`
    field names, overriding ``config`` (``Simulator(time_scale=0.001, error_5xx_rate=0.1)``).

    ``state_file``: a file (SQLite) keeping the tasks, their clock, the money ledger and the
    ledger of tasks per fingerprint, written as they change; a simulator started on a file an
    earlier one left (even one killed with SIGKILL) goes on with its tasks, its time and its
    random source (so the seed only applies to a new file). See ``omnivid.testing._persist``.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        faults: FaultConfig | None = None,
        state_file: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        fault_fields = {field.name for field in attrs.fields(FaultConfig)}
        fault_options = {k: v for k, v in options.items() if k in fault_fields}
        config_options = {k: v for k, v in options.items() if k not in fault_fields}
        config, faults = config or SimConfig(), faults or FaultConfig()
        config = attrs.evolve(config, **config_options) if config_options else config
        faults = attrs.evolve(faults, **fault_options) if fault_options else faults
        self._state = SimState(
            config=config,
            faults=faults,
            rng=random.Random(config.seed),
            clock=SimClock(config.time_scale),
        )
        self._api = ApiRoutes(self._state, urls=self._urls, wake=self._wake_driver)
        self._files = FileServer(self._state)
        self._callbacks = Callbacks(self._state, urls=self._urls)
        self._runner: web.AppRunner | None = None
        self._wake: asyncio.Event | None = None
        self._tg: TaskGroup | None = None
        self._port: int | None = None
        self._state_path = state_file
        self._state_file: StateFile | None = None
        self._state_loaded = False

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
        start = self._open_state_file()
        self._state.clock = SimClock(self.config.time_scale, start)
        runner = web.AppRunner(
            self._build_app(), access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        try:
            await runner.setup()
            await self._listen(runner)
        except BaseException:
            await runner.cleanup()
            self._close_state_file()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        if self._state_file is not None:
            self._state_file.save_port(self._port)
        self._callbacks.open()
        self._wake = asyncio.Event()
        self._tg = tg = await open_task_group()
        tg.start_soon(self._drive, name="omnivid-sim-driver")

    async def close(self) -> None:
        """Stop serving, cancel pending callbacks and release every resource.

        Safe while the caller is being cancelled (Ctrl-C in a program that runs a simulator):
        the task group `start` opened is closed first, while its cancel scope is still the
        innermost one of this task, and the server's shutdown then runs shielded (bounded by its
        0.25 s shutdown timeout) instead of being cut short with that group left open.
        """
        tg, self._tg = self._tg, None
        try:
            await close_task_group(tg)  # the driver and pending callback deliveries
        finally:
            with anyio.CancelScope(shield=True):
                runner, self._runner = self._runner, None
                try:
                    if runner is not None:
                        await runner.cleanup()
                    await self._callbacks.close()
                finally:
                    self._close_state_file()

    async def _listen(self, runner: web.AppRunner) -> None:
        """Bind ``config.port``; with port 0 and a state file, first the port it was on, so
        the result URLs it handed out still work (a free port if that one is taken)."""
        saved = self._state_file.port if self._state_file is not None else None
        if self.config.port == 0 and saved:
            site = web.TCPSite(runner, self.config.host, saved)
            try:
                await site.start()
                return
            except OSError:  # taken by now: the URLs handed out before are gone
                await site.stop()
        await web.TCPSite(runner, self.config.host, self.config.port).start()

    def _open_state_file(self) -> float | None:
        """Open and lock ``state_file`` (if any); the first time, load what it holds. Returns
        the simulated time to start from (None: the real time)."""
        if self._state_path is None:
            return None
        state_file = StateFile.open(self._state_path)
        if self._state_loaded:  # started again: the tasks in memory are the newest
            start: float | None = self._state.clock.now()
            state_file.attach(self._state)
            state_file.port = self._port
            state_file.save(list(self._state.store.tasks.values()))
        else:
            start = state_file.load(self._state)
            self._state_loaded = True
        self._state_file = state_file
        return start

    def _close_state_file(self) -> None:
        state_file, self._state_file = self._state_file, None
        if state_file is not None:
            self._state.store.saver = None
            state_file.close()

    # -- public API --------------------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        """The server's behaviour (assignable; or change fields with `configure`)."""
        return self._state.config

    @config.setter
    def config(self, config: SimConfig) -> None:
        self._state.config = config

    @property
    def faults(self) -> FaultConfig:
        """The injected faults (assignable; or change fields with `configure`)."""
        return self._state.faults

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        self._state.faults = faults

    @property
    def stats(self) -> SimStats:
        """What the simulator saw and charged since it started or `reset_stats` was called."""
        return self._state.stats

    @stats.setter
    def stats(self, stats: SimStats) -> None:
        self._state.stats = stats

    @property
    def request_log(self) -> list[RequestRecord]:
        """One `RequestRecord` per API request (control endpoints excluded), in arrival order."""
        return self._state.request_log

    @request_log.setter
    def request_log(self, request_log: list[RequestRecord]) -> None:
        self._state.request_log = request_log

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
        return self._state.clock.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward: tasks end and URLs expire as if it had passed."""
        self._state.clock.advance(seconds)
        self._tick()
        self._wake_driver()

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
        in_flight = self._state.store.in_flight
        self.stats = SimStats(max_in_flight={k: v for k, v in in_flight.items() if v})
        self.request_log.clear()

    def task_status(self, task_id: str) -> str | None:
        """The current status of a task ("pending", ..., "completed"), None if unknown."""
        task = self._state.store.get(task_id)
        return None if task is None else task.view(self._state.clock.now(), ()).status

    def in_flight(self, api_key: str | None = None) -> int:
        """Non-terminal tasks of ``api_key`` (default: `api_key`)."""
        return self._state.store.in_flight.get(api_key or self.api_key, 0)

    def balance(self, api_key: str) -> float | None:
        """Budget left for ``api_key`` (held amounts excluded), None if it has no budget."""
        budget = self.config.budgets.get(api_key)
        return None if budget is None else self._state.ledger.remaining(api_key, budget)

    async def wait_idle(self) -> None:
        """Wait until every task has ended and every callback delivery (retries included) is over.

        Waits as long as the tasks take (in scaled time), so use it with a small time_scale.
        """
        while (next_end := self._state.store.next_end()) is not None:
            clock = self._state.clock
            delay = clock.real_seconds(next_end - clock.now())
            await asyncio.sleep(max(0.0, delay) + 0.001)
            self._tick()
        await self._callbacks.wait()

    def client(self, provider: str, **options: Any) -> AsyncClient:
        """An unopened ``omnivid.AsyncClient`` on this simulator (``async with`` it).

        It gets this simulator's base URL, `api_key` and time scale (and may send loopback
        callback URLs if the simulator accepts them); ``options`` override or add settings.
        """
        settings: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url(provider),
            "time_scale": self._state.clock.time_scale,
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
        app.on_response_prepare.append(add_request_id)
        router = app.router
        router.add_post(
            f"/{{provider:{_PROVIDER_RE}}}/v1/videos/generations", self._api.handle_submit
        )
        router.add_get(f"/{{provider:{_PROVIDER_RE}}}/v1/tasks/{{task_id}}", self._api.handle_task)
        router.add_get(r"/files/{task_id}/{index:\d+}.mp4", self._files.handle)
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
        exchange = Exchange()
        EXCHANGE.set(exchange)
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

    # -- task lifecycles ---------------------------------------------------------------------

    async def _drive(self) -> None:
        """Finish tasks (and fire their callbacks) when they are due, even if nobody polls."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            self._tick()
            next_end = self._state.store.next_end()
            delay = None
            if next_end is not None:
                clock = self._state.clock
                delay = max(0.0, clock.real_seconds(next_end - clock.now()))
            if self._state_file is not None:  # keep the time on file near the real one
                self._state_file.save_clock()
                delay = 1.0 if delay is None else min(delay, 1.0)
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _wake_driver(self) -> None:
        """Have the driver look again at the next end (time moved on, or a task was added)."""
        if self._wake is not None:
            self._wake.set()

    def _tick(self) -> None:
        for task in self._state.store.advance(self._state.clock.now(), self.config.url_ttl):
            self._on_task_end(task)

    def _on_task_end(self, task: SimTask) -> None:
        cost, credits = task.charged
        self._state.ledger.settle(task.api_key, task.held, cost)
        stats = self.stats
        stats.total_cost += cost
        stats.total_credits += credits
        stats.cost_by_key[task.api_key] = stats.cost_by_key.get(task.api_key, 0.0) + cost
        if task.callback_url and self._tg is not None:
            self._callbacks.start(self._tg, task)

    def _urls(self, task: SimTask) -> tuple[str, ...]:
        return (self.file_url(task.id),) if self._port is not None else ()

    # -- control endpoints (for out-of-process use) --------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        data = self.stats.to_json()
        data["in_flight"] = {k: v for k, v in self._state.store.in_flight.items() if v}
        data["now"] = self._state.clock.now()
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
        return web.json_response({"ok": True, "now": self._state.clock.now()})
