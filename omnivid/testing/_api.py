"""The providers' API routes: submit a generation and poll a task, for APIMart and EvoLink.

Both providers share one flow (the ``{provider}`` path segment picks the wire format from
``_wire``): `ApiRoutes.handle_submit` admits the key, draws the request's faults, validates the
body, applies the per-key limits (denied models, concurrent tasks, budget), creates the task and
holds its price; `ApiRoutes.handle_task` answers a poll with the task as seen at the simulated
now. Where the providers differ in a new task (id format, video length, price and credits
reserved) is spelled out in `ApiRoutes._new_task`. The routes share the simulator's `SimState`,
and get from it the task's file URLs and a way to wake its driver when a task is added.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from ._config import APIMART, DEFAULT_DURATIONS, LANGUAGES, Language
from ._faults import RequestFaults, admit, draw_faults, draw_outcome
from ._markers import Markers, parse_markers
from ._replies import Reply, error_reply, fault_reply, send
from ._state import SimState, SimTask
from ._stats import fingerprint
from ._validation import Accepted, validate
from ._wire import ApiError, apimart_submit, apimart_task, evolink_submit, evolink_task

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EVOLINK_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


class ApiRoutes:
    """The submit and poll handlers of both providers, on the simulator's shared state.

    ``urls(task)`` gives a task's result file URLs; ``wake()`` tells the simulator's driver that
    a task was added (its end may be the next one due).
    """

    def __init__(
        self,
        state: SimState,
        *,
        urls: Callable[[SimTask], tuple[str, ...]],
        wake: Callable[[], None],
    ) -> None:
        self._state = state
        self._urls = urls
        self._wake = wake

    async def handle_submit(self, request: web.Request) -> web.StreamResponse:
        """``POST /{provider}/v1/videos/generations``."""
        provider = request.match_info["provider"]
        self._state.stats.submits += 1
        faults = RequestFaults()
        try:
            key = admit(self._state, request)
            reply = await self._submit(request, provider, key, faults)
        except ApiError as error:
            reply = error_reply(self._state.config, provider, error)
        return await send(request, reply, faults)

    async def _submit(
        self, request: web.Request, provider: str, key: str, faults: RequestFaults
    ) -> Reply:
        state = self._state
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        prompt = body.get("prompt") if isinstance(body, dict) else None
        markers = parse_markers(prompt) if isinstance(prompt, str) else Markers()
        fp = fingerprint(body) if isinstance(body, dict) else ""
        draw_faults(state, faults, "submit", fp, markers.for_stage("submit"))
        if faults.pre is not None:
            return fault_reply(state.config, provider, faults.pre)
        accepted = validate(
            provider, body, allow_loopback_callbacks=state.config.allow_loopback_callbacks
        )
        assert isinstance(body, dict)
        if accepted.model in state.config.denied_models.get(key, ()):
            return error_reply(
                state.config, provider, ApiError("model_access_denied"), accepted.model
            )
        if accepted.extend_from_task_id is not None:
            earlier = state.store.get(accepted.extend_from_task_id)
            if earlier is None or earlier.api_key != key or earlier.status != "completed":
                raise ApiError("invalid_request", "extend_from_task_id is not a completed task")
        limit = state.config.max_concurrent_tasks
        if limit is not None and state.store.in_flight.get(key, 0) >= limit:
            raise ApiError("rate_limited")
        task = self._new_task(provider, key, accepted, markers)
        budget = state.config.budgets.get(key)
        if budget is not None and task.held > state.ledger.remaining(key, budget) + 1e-9:
            raise ApiError("insufficient_quota")
        state.ledger.hold(key, task.held)
        task.fingerprint = fp
        in_flight = state.store.add(task)  # on file (with a state file) before the answer
        stats = state.stats
        stats.max_in_flight[key] = max(stats.max_in_flight.get(key, 0), in_flight)
        stats.tasks.append(task.id)
        stats.tasks_by_fingerprint[fp] = stats.tasks_by_fingerprint.get(fp, 0) + 1
        self._wake()
        if provider == APIMART:
            return Reply(200, body=apimart_submit(task.id))
        return Reply(200, body=evolink_submit(task.view(task.created, ())))

    def _new_task(self, provider: str, key: str, accepted: Accepted, markers: Markers) -> SimTask:
        """A new task for an accepted request: its duration, estimate, outcome, id and price."""
        state = self._state
        config, rng = state.config, state.rng
        now = state.clock.now()
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
        outcome = markers.outcome or draw_outcome(state)
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

    async def handle_task(self, request: web.Request) -> web.StreamResponse:
        """``GET /{provider}/v1/tasks/{task_id}``; APIMart's optional ``?language=zh|en|ko|ja``
        sets the language of the answer's messages (another value is a 400)."""
        state = self._state
        provider = request.match_info["provider"]
        state.stats.polls += 1
        faults = RequestFaults()
        language: Language | None = None
        try:
            asked = request.query.get("language") if provider == APIMART else None
            language = _known_language(asked)
            key = admit(state, request)
            if asked is not None and language is None:
                raise ApiError("invalid_request", f"language must be one of {', '.join(LANGUAGES)}")
            task = state.store.get(request.match_info["task_id"])
            if task is not None and (task.provider != provider or task.api_key != key):
                task = None
            markers = task.markers.for_stage("poll") if task is not None else ()
            draw_faults(state, faults, "poll", task.id if task else "", markers)
            if faults.pre is not None:
                reply = fault_reply(state.config, provider, faults.pre, language)
            elif task is None:
                reply = error_reply(
                    state.config, provider, ApiError("not_found"), language=language
                )
            else:
                view = task.view(state.clock.now(), self._urls(task))
                body = (
                    apimart_task(view, state.config.url_form, language)
                    if provider == APIMART
                    else evolink_task(view)
                )
                reply = Reply(200, body=body)
        except ApiError as error:
            reply = error_reply(state.config, provider, error, language=language)
        return await send(request, reply, faults)


def _known_language(value: str | None) -> Language | None:
    """``value`` if it is a language the simulator speaks, else None."""
    for language in LANGUAGES:
        if value == language:
            return language
    return None
