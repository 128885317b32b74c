"""omnivid inside an aiohttp web application: the client lives in a ``cleanup_ctx``, batches run
in the background, and EvoLink callbacks are verified with polling as the fallback.

Run it::

    export OMNIVID_PROVIDER=evolink EVOLINK_API_KEY=sk-...
    export OMNIVID_CALLBACK_URL=https://app.example.com/omnivid/callbacks   # optional
    python examples/aiohttp_app.py --port 8080

Against the simulator instead (nothing billed; ``omnivid sim`` prints the URLs and the key)::

    omnivid sim --port 8080 --time-scale 0.01 --allow-loopback-callbacks &
    export OMNIVID_PROVIDER=apimart OMNIVID_BASE_URL=http://127.0.0.1:8080/apimart
    export OMNIVID_API_KEY=sk-omnivid-sim OMNIVID_TIME_SCALE=0.01
    python examples/aiohttp_app.py --port 8000

Endpoints and configuration are those of ``examples/fastapi_app.py`` (no download endpoint:
``videos`` are the provider's result URLs, fetched directly until they expire)::

    POST /videos        a VideoRequest as JSON        -> 201 {"id", "status", ...}
    GET  /videos/{id}   the task                      -> {"id", "status", "progress", "videos", ...}
    POST /batches       {"requests": [...], "max_in_flight": 4}   -> 202 {"id", "total"}
    GET  /batches/{id}  the batch and its jobs so far -> {"id", "state", "done", "jobs": [...]}
    POST /omnivid/callbacks/{token}   EvoLink's callbacks (when OMNIVID_CALLBACK_URL is set)

``OMNIVID_PROVIDER``, ``OMNIVID_BASE_URL``, ``OMNIVID_API_KEY``, ``OMNIVID_CALLBACK_URL``,
``OMNIVID_ALLOW_PRIVATE_CALLBACKS``, ``OMNIVID_TIME_SCALE``, ``OMNIVID_MAX_IN_FLIGHT``.

The background task group is opened in the ``cleanup_ctx`` and closed at cleanup, so both must
run in the same task, as they do under ``web.run_app`` and a single ``AppRunner``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web
from anyio.abc import TaskGroup
from attrs import Factory, define, frozen

from omnivid import AsyncClient, Task, VideoRequest
from omnivid.errors import (
    InsufficientCreditError,
    NotFoundError,
    OmnividError,
    RateLimitError,
    SubmissionUnknownError,
    ValidationError,
)
from omnivid.integrations import CallbackReceiver, redact_access_logs
from omnivid.integrations.aiohttp import callback_handler

if TYPE_CHECKING:
    from omnivid import Outcome

log = logging.getLogger("omnivid.examples.aiohttp")

MAX_BATCH = 1000
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


@frozen(kw_only=True)
class Settings:
    """How the app reaches its provider (see the module docstring for the variables)."""

    provider: str = "apimart"
    base_url: str | None = None
    api_key: str | None = None
    callback_url: str | None = None
    allow_private_callbacks: bool = False
    time_scale: float = 1.0
    max_in_flight: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read the ``OMNIVID_*`` variables."""
        return cls(
            provider=env.get("OMNIVID_PROVIDER", "apimart"),
            base_url=env.get("OMNIVID_BASE_URL") or None,
            api_key=env.get("OMNIVID_API_KEY") or None,
            callback_url=env.get("OMNIVID_CALLBACK_URL") or None,
            allow_private_callbacks=env.get("OMNIVID_ALLOW_PRIVATE_CALLBACKS", "") == "1",
            time_scale=float(env.get("OMNIVID_TIME_SCALE", "1")),
            max_in_flight=int(env.get("OMNIVID_MAX_IN_FLIGHT", "8")),
        )


@define
class Batch:
    """A background ``client.map`` run and the outcomes it has produced so far."""

    id: str
    requests: list[VideoRequest]
    state: str = "running"  # running | finished | cancelled | crashed
    outcomes: dict[int, Outcome] = Factory(dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The batch's state; ``jobs`` lists the finished ones, in input order."""
        done = [self.outcomes[i] for i in sorted(self.outcomes)]
        return {
            "id": self.id,
            "state": self.state,
            "total": len(self.requests),
            "done": len(done),
            "succeeded": sum(o.ok for o in done),
            "failed": sum(not o.ok for o in done),
            "error": self.error,
            "jobs": [outcome_json(o) for o in done],
        }


@define
class Batches:
    """The app's batches, run in the cleanup context's task group (cancelled at cleanup)."""

    client: AsyncClient
    group: TaskGroup
    max_in_flight: int
    runs: dict[str, Batch] = Factory(dict)

    def start(self, requests: list[VideoRequest], max_in_flight: int | None) -> Batch:
        """Start a batch in the background and return it."""
        batch = Batch(id=f"batch-{secrets.token_hex(8)}", requests=requests)
        self.runs[batch.id] = batch
        self.group.start_soon(self._run, batch, max_in_flight or self.max_in_flight)
        return batch

    async def _run(self, batch: Batch, max_in_flight: int) -> None:
        jobs = list(enumerate(batch.requests))
        try:
            async with self.client.map(jobs, max_in_flight=max_in_flight) as outcomes:
                async for outcome in outcomes:
                    key = outcome.key
                    assert isinstance(key, int)
                    batch.outcomes[key] = outcome
            batch.state = "finished"
        except anyio.get_cancelled_exc_class():
            batch.state = "cancelled"
            raise
        except Exception as exc:  # kept for GET /batches/{id}; the app keeps serving
            log.exception("batch %s crashed", batch.id)
            batch.state, batch.error = "crashed", f"{type(exc).__name__}: {exc}"


CLIENT = web.AppKey("omnivid_client", AsyncClient)
BATCHES = web.AppKey("omnivid_batches", Batches)
RECEIVER = web.AppKey("omnivid_receiver", CallbackReceiver)


def task_json(task: Task) -> dict[str, Any]:
    """A task as the API returns it."""
    return {
        "id": task.id,
        "status": task.status.value,
        "progress": task.progress,
        "videos": task.video_urls,
        "error": {"code": task.error.code, "message": task.error.message} if task.error else None,
        "cost": task.cost,
        "credits": task.credits,
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """One finished batch job."""
    task = outcome.task
    return {
        "key": outcome.key,
        "ok": outcome.ok,
        "task_id": outcome.task_id,
        "status": task.status.value if task else None,
        "videos": task.video_urls if task else [],
        "error": str(outcome.error) if outcome.error else None,
        "cost": outcome.cost,
    }


def error_response(exc: OmnividError) -> web.Response:
    """An omnivid error as an HTTP answer (omnivid errors never contain the API key)."""
    body: dict[str, Any] = {"error": str(exc)}
    headers: dict[str, str] = {}
    status = 502
    if isinstance(exc, ValidationError):
        status, body["field"], body["rule"] = 422, exc.field, exc.rule
    elif isinstance(exc, SubmissionUnknownError):
        body["fingerprint"] = exc.fingerprint
    elif isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, RateLimitError):
        status = 429
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, InsufficientCreditError):
        status = 402
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def omnivid_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn omnivid errors raised by a handler into JSON answers."""
    try:
        response: web.StreamResponse = await handler(request)
    except OmnividError as exc:
        return error_response(exc)
    return response


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; a ``ValidationError`` when it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        raise ValidationError("body", "…", "must be JSON") from None


def parse_request(data: Any, where: str = "") -> VideoRequest:
    """A ``VideoRequest`` from untrusted JSON; a ``ValidationError`` names the field (with
    ``where``). Local file paths are refused by their text, before the filesystem is touched:
    a client must not make the server read (and upload) its files, or probe which exist."""
    if not isinstance(data, dict):
        raise ValidationError(where or "body", type(data).__name__, "must be a JSON object")
    try:
        return VideoRequest.from_dict(data, allow_local_files=False)
    except ValidationError as exc:
        raise ValidationError(where + exc.field, exc.value, exc.rule) from None


async def create_video(request: web.Request) -> web.Response:
    """``POST /videos``: submit one request, answer with the new task."""
    task = await request.app[CLIENT].submit(parse_request(await json_body(request)))
    return web.json_response(task_json(task), status=201)


async def get_video(request: web.Request) -> web.Response:
    """``GET /videos/{id}``: the task, from a confirmed callback if there was one."""
    task_id = request.match_info["task_id"]
    if not TASK_ID.fullmatch(task_id):
        return web.json_response({"error": "no such task"}, status=404)
    receiver = request.app.get(RECEIVER)
    task = receiver.result(task_id) if receiver is not None else None
    if task is None:
        task = await request.app[CLIENT].get(task_id)
    return web.json_response(task_json(task))


async def create_batch(request: web.Request) -> web.Response:
    """``POST /batches``: check every job, then run them in the background."""
    client = request.app[CLIENT]
    body = await json_body(request)
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise ValidationError("requests", "…", f"must be a list of 1 to {MAX_BATCH} requests")
    max_in_flight = body.get("max_in_flight")
    if max_in_flight is not None and (
        not isinstance(max_in_flight, int) or not 0 < max_in_flight <= 100
    ):
        raise ValidationError("max_in_flight", max_in_flight, "must be an integer 1 to 100")
    requests = [parse_request(item, f"requests[{i}].") for i, item in enumerate(items)]
    for i, req in enumerate(requests):  # every job is checked before anything is sent
        try:
            client.validate(req)
        except ValidationError as exc:
            raise ValidationError(f"requests[{i}].{exc.field}", exc.value, exc.rule) from None
    batch = request.app[BATCHES].start(requests, max_in_flight)
    return web.json_response(
        {"id": batch.id, "total": len(requests), "state": batch.state}, status=202
    )


async def get_batch(request: web.Request) -> web.Response:
    """``GET /batches/{id}``: the batch and its finished jobs."""
    batch = request.app[BATCHES].runs.get(request.match_info["batch_id"])
    if batch is None:
        return web.json_response({"error": "no such batch"}, status=404)
    return web.json_response(batch.as_json())


def create_app(settings: Settings | None = None) -> web.Application:
    """The application; ``settings`` default to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    receiver = CallbackReceiver(settings.callback_url) if settings.callback_url else None

    async def omnivid_context(app: web.Application) -> AsyncIterator[None]:
        client = AsyncClient(
            settings.provider,
            api_key=settings.api_key,
            base_url=settings.base_url,
            time_scale=settings.time_scale,
            allow_private_callbacks=settings.allow_private_callbacks,
            callbacks=receiver,
        )
        async with client, anyio.create_task_group() as group:
            app[CLIENT] = client
            app[BATCHES] = Batches(client, group, settings.max_in_flight)
            yield
            group.cancel_scope.cancel()

    app = web.Application(middlewares=[omnivid_errors])
    app.cleanup_ctx.append(omnivid_context)
    app.router.add_post("/videos", create_video)
    app.router.add_get("/videos/{task_id}", get_video)
    app.router.add_post("/batches", create_batch)
    app.router.add_get("/batches/{batch_id}", get_batch)
    if receiver is not None:
        app[RECEIVER] = receiver
        app.router.add_post(receiver.path.rstrip("/") + "/{token}", callback_handler(receiver))
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve on ``--host``/``--port`` (default 127.0.0.1:8080)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    redact_access_logs()
    web.run_app(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
