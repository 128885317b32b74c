"""omnivid inside a FastAPI service: one client for the app's lifetime, background batches, and
secure EvoLink callbacks with polling as the fallback.

Run it (needs FastAPI and an ASGI server: ``pip install "omnivid[examples]"``)::

    export OMNIVID_PROVIDER=evolink EVOLINK_API_KEY=sk-...
    export OMNIVID_CALLBACK_URL=https://app.example.com/omnivid/callbacks   # optional
    uvicorn --factory examples.fastapi_app:create_app

Against the simulator instead (nothing billed; ``omnivid sim`` prints the URLs and the key)::

    omnivid sim --port 8080 --time-scale 0.01 --allow-loopback-callbacks &
    export OMNIVID_PROVIDER=apimart OMNIVID_BASE_URL=http://127.0.0.1:8080/apimart
    export OMNIVID_API_KEY=sk-omnivid-sim OMNIVID_TIME_SCALE=0.01
    uvicorn --factory examples.fastapi_app:create_app --port 8000

Endpoints::

    POST /videos        a VideoRequest as JSON        -> 201 {"id", "status", ...}
    GET  /videos/{id}   the task                      -> {"id", "status", "progress", "videos", ...}
    POST /batches       {"requests": [...], "max_in_flight": 4}   -> 202 {"id", "total"}
    GET  /batches/{id}  the batch and its jobs so far -> {"id", "state", "done", "jobs": [...]}
    POST /omnivid/callbacks/{token}   EvoLink's callbacks (when OMNIVID_CALLBACK_URL is set)

There is no download endpoint, by design: a finished task's ``videos`` are the provider's
result URLs, public links a client fetches directly until they expire (about a day). An app
that must keep videos longer saves them with ``client.download`` as tasks complete and serves
them from its own storage (see the README, "Running the examples").

Errors are JSON ``{"error": ...}``: 422 for a request breaking a provider rule (with ``field``
and ``rule``), 404 for an unknown task, 429/402 passed on from the provider, 502 otherwise; a
submit whose answer was lost (the provider may have accepted and will bill it) is a 502 with
the request ``fingerprint``, and is never retried blindly.

Configuration, from the environment (:meth:`Settings.from_env`):

``OMNIVID_PROVIDER``         ``apimart`` (default) or ``evolink``
``OMNIVID_BASE_URL``         the provider's base URL (default: production; or a simulator's)
``OMNIVID_API_KEY``          the key (default: ``APIMART_API_KEY`` / ``EVOLINK_API_KEY``)
``OMNIVID_CALLBACK_URL``     public URL of this app's callback route: turns on EvoLink callbacks
``OMNIVID_ALLOW_PRIVATE_CALLBACKS``  ``1`` to allow an http/loopback callback URL (local tests)
``OMNIVID_TIME_SCALE``       real seconds per provider second (only for a fast simulator)
``OMNIVID_MAX_IN_FLIGHT``    tasks in flight per batch (default 8)
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from anyio.abc import TaskGroup
from attrs import Factory, define, frozen
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse

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
from omnivid.integrations.fastapi import callback_router

if TYPE_CHECKING:
    from omnivid import Outcome

log = logging.getLogger("omnivid.examples.fastapi")

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
    """The app's batches, run in the lifespan's task group (cancelled at shutdown)."""

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


def error_response(exc: OmnividError) -> JSONResponse:
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
    return JSONResponse(body, status_code=status, headers=headers)


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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; ``settings`` default to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    receiver = CallbackReceiver(settings.callback_url) if settings.callback_url else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact_access_logs()
        client = AsyncClient(
            settings.provider,
            api_key=settings.api_key,
            base_url=settings.base_url,
            time_scale=settings.time_scale,
            allow_private_callbacks=settings.allow_private_callbacks,
            callbacks=receiver,
        )
        async with client, anyio.create_task_group() as group:
            app.state.client = client
            app.state.batches = Batches(client, group, settings.max_in_flight)
            yield
            group.cancel_scope.cancel()

    app = FastAPI(title="omnivid example", lifespan=lifespan)
    app.state.receiver = receiver
    if receiver is not None:
        app.include_router(callback_router(receiver))

    @app.exception_handler(OmnividError)
    async def omnivid_error(request: Request, exc: OmnividError) -> JSONResponse:
        return error_response(exc)

    @app.post("/videos", status_code=201)
    async def create_video(request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
        client: AsyncClient = request.app.state.client
        task = await client.submit(parse_request(body))
        return task_json(task)

    @app.get("/videos/{task_id}", response_model=None)
    async def get_video(task_id: str, request: Request) -> dict[str, Any] | JSONResponse:
        if not TASK_ID.fullmatch(task_id):
            return JSONResponse({"error": "no such task"}, status_code=404)
        # a confirmed callback already holds the terminal task: no API call needed
        task = receiver.result(task_id) if receiver is not None else None
        if task is None:
            client: AsyncClient = request.app.state.client
            task = await client.get(task_id)
        return task_json(task)

    @app.post("/batches", status_code=202)
    async def create_batch(request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
        client: AsyncClient = request.app.state.client
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
        batches: Batches = request.app.state.batches
        batch = batches.start(requests, max_in_flight)
        return {"id": batch.id, "total": len(requests), "state": batch.state}

    @app.get("/batches/{batch_id}", response_model=None)
    async def get_batch(batch_id: str, request: Request) -> dict[str, Any] | JSONResponse:
        batches: Batches = request.app.state.batches
        batch = batches.runs.get(batch_id)
        if batch is None:
            return JSONResponse({"error": "no such batch"}, status_code=404)
        return batch.as_json()

    return app


def main() -> None:
    """Serve with uvicorn on port 8000 (``pip install uvicorn``)."""
    import uvicorn  # type: ignore[import-not-found]

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
