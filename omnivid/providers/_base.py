"""What a provider adapter is, and the registry that holds them.

A provider is one module defining a :class:`Provider` subclass and calling :func:`register`.
Each of its models is a :class:`ModelSpec`: a name, a description of its rules for humans, and
a ``check`` function enforcing them before the network.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from attrs import frozen

from .._models import Task, VideoRequest
from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientCreditError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)

__all__ = [
    "CheckOptions",
    "FailureKind",
    "ModelSpec",
    "Provider",
    "all_models",
    "get_provider",
    "list_providers",
    "provider_for_model",
    "register",
]

FailureKind = str
"""``"transient"`` (worth resubmitting), ``"permanent"`` (never) or ``"unknown"``."""


@frozen
class CheckOptions:
    """Switches for local validation. ``allow_private_callbacks`` is for tests on loopback."""

    allow_private_callbacks: bool = False


DEFAULT_CHECKS = CheckOptions()


@frozen
class ModelSpec:
    """One model of one provider: its rules for humans (``rules``) and for code (``check``)."""

    name: str
    provider: str
    summary: str
    modes: tuple[str, ...]
    rules: tuple[str, ...]
    check: Callable[[VideoRequest, CheckOptions], None] = attrs.field(repr=False, eq=False)
    typical_seconds: float = 60.0
    cost_estimate: float | None = None
    """A typical task's cost in the provider's billing unit (APIMart: currency, EvoLink:
    credits), reserved by a batch's ``max_cost`` before each submit; None if unknown."""
    cost_per_second: float | None = None
    """For a model billed by video second (EvoLink): the cost of one second; the estimate is
    then ``cost_per_second * duration``, with ``"auto"`` or no duration counting as
    ``max_seconds`` (the longest the model makes, so the budget never under-reserves)."""
    max_seconds: int | None = None

    def estimate(self, request: VideoRequest) -> float | None:
        """What ``request`` is expected to cost before its submit (see the fields above)."""
        if self.cost_per_second is None:
            return self.cost_estimate
        duration = request.duration
        seconds = duration if isinstance(duration, int | float) else self.max_seconds
        if seconds is None:
            return self.cost_estimate
        return round(self.cost_per_second * seconds, 6)


_RESUBMIT_KIND: dict[str, FailureKind] = {
    "quota": "transient",
    "timeout": "transient",
    "moderation": "permanent",
    "invalid": "permanent",
    "cancelled": "permanent",
}

_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


class Provider(abc.ABC):
    """Base of every provider adapter. Subclasses set the class attributes and wire methods."""

    name: ClassVar[str]
    base_url: ClassVar[str]
    env_var: ClassVar[str]
    models: ClassVar[Mapping[str, ModelSpec]]
    callback_field: ClassVar[str | None] = None
    """The submit body's field for a completion callback URL; None if the provider has none."""
    status_languages: ClassVar[tuple[str, ...]] = ()
    """Values of the task-status ``language`` query (empty: the provider has no such query)."""

    # -- requests ---------------------------------------------------------------------------
    def spec(self, model: str) -> ModelSpec:
        """The model's spec, or a ``ValidationError`` listing the models this provider has."""
        try:
            return self.models[model]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.models))
            raise ValidationError(
                "model", model, f"{self.name} offers {known}", provider=self.name
            ) from None

    def validate(self, request: VideoRequest, options: CheckOptions = DEFAULT_CHECKS) -> None:
        """Check every documented rule locally; raise ``ValidationError`` on the first broken."""
        self.spec(request.model).check(request, options)

    @abc.abstractmethod
    def build_submit_body(
        self, request: VideoRequest, options: CheckOptions = DEFAULT_CHECKS
    ) -> dict[str, Any]:
        """Validate ``request`` and return the JSON body to POST (local files become data)."""

    def status_query(self, language: str | None) -> dict[str, str]:
        """The task-status query for ``language`` ({} for None); a ``ValidationError`` for a
        language the provider does not offer."""
        if language is None:
            return {}
        if language not in self.status_languages:
            rule = (
                f"{self.name} answers task status in {', '.join(self.status_languages)}"
                if self.status_languages
                else f"{self.name} has no language option for task status"
            )
            raise ValidationError("language", language, rule, provider=self.name)
        return {"language": language}

    # -- responses --------------------------------------------------------------------------
    @abc.abstractmethod
    def parse_submit(self, data: Any, request: VideoRequest) -> Task:
        """The task created by a successful submit response."""

    @abc.abstractmethod
    def parse_task(self, data: Any, *, model: str | None = None) -> Task:
        """A task from a task-status response (or a callback body); ``model`` fills in the
        model when the body does not name it (the caller knows what it submitted)."""

    def task_from_raw(self, raw: Any, *, model: str | None = None) -> Task:
        """The task again from its ``Task.raw`` (what a journal keeps of a finished task).

        The default suits adapters whose ``raw`` is the whole task-status body; an adapter that
        keeps part of the body (APIMart keeps ``data``) wraps it back."""
        return self.parse_task(raw, model=model)

    def classify_failure(self, task: Task) -> FailureKind:
        """Whether a failed task is worth resubmitting: transient (its cause, ``Task.
        failure_kind``, is an upstream quota or timeout, in any language), permanent
        (moderation, invalid input, cancelled) or unknown."""
        return _RESUBMIT_KIND.get(task.failure_kind or "unknown", "unknown")

    def error_from_response(
        self,
        status: int,
        text: str,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
    ) -> APIError:
        """The typed error for a non-2xx response; never raises on a malformed body.

        ``code`` is the most specific identifier (see :class:`~omnivid.errors.APIError`): the
        provider's ``error.code`` unless it is just a number, then its ``error.type``.
        """
        wire_code: str | None = None
        type_: str | None = None
        message = ""
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            wire_code = None if err.get("code") is None else str(err.get("code"))
            type_ = None if err.get("type") is None else str(err.get("type"))
            message = str(err.get("message") or "")
        elif isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
        numeric = wire_code is None or wire_code.lstrip("-").isdigit()
        code = type_ if numeric and type_ else wire_code
        if not message:
            message = text.strip()[:200] or "(empty body)"
        cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
        kwargs: dict[str, Any] = {
            "status": status,
            "code": code,
            "type": type_,
            "wire_code": wire_code,
            "body": text[:500],
            "provider": self.name,
            "model": model,
            "task_id": task_id,
            "request_id": request_id,
        }
        if issubclass(cls, RateLimitError | ServerError):  # the errors that carry a hint
            kwargs["retry_after"] = retry_after
        return cls(message, **kwargs)

    def malformed(self, what: str, text: str, *, status: int = 200, **ctx: Any) -> APIError:
        """An ``APIError`` for a 2xx response omnivid cannot read."""
        return APIError(
            f"malformed {what} response: {text.strip()[:200] or '(empty body)'}",
            status=status,
            body=text[:500],
            provider=self.name,
            **ctx,
        )


_REGISTRY: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """Add a provider adapter to the registry (a provider module calls this once)."""
    _REGISTRY[provider.name] = provider
    return provider


def get_provider(name: str | Provider) -> Provider:
    """The registered adapter for ``name``; ``ConfigurationError`` lists the known ones."""
    if isinstance(name, Provider):
        return name
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigurationError(f"unknown provider {name!r}; known: {known}") from None


def list_providers() -> list[Provider]:
    """Every registered provider, by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def all_models() -> list[ModelSpec]:
    """Every model of every provider."""
    return [spec for p in list_providers() for spec in p.models.values()]


def provider_for_model(model: str) -> Provider:
    """The provider offering ``model`` (model names are unique across providers)."""
    for p in list_providers():
        if model in p.models:
            return p
    known = ", ".join(sorted(s.name for s in all_models()))
    raise ValidationError("model", model, f"no provider offers it; known: {known}")
