"""Exceptions raised by omnivid.

Every error carries the context needed to act on it: the provider, the model, the task id and
the provider's request id where one is known. An API key never appears in any of them.

Hierarchy::

    OmnividError
    ├── ConfigurationError          (missing API key, unknown provider or model)
    │   └── DatabaseUnavailableError (a shared journal's database cannot be reached)
    ├── ValidationError             (bad request, caught before the network; also a ValueError)
    │   └── JournalConflictError    (a journal key already holds a different request)
    ├── TransportError              (connection failed, reset, timed out)
    │   ├── ConnectionFailedError   (no connection: the request was never sent, safe to resend)
    │   ├── TransportTimeoutError
    │   └── EndpointUnreachableError (no request ever reached the endpoint: refused, no DNS)
    ├── APIError                    (the provider answered with an error status)
    │   ├── BadRequestError         (400)
    │   ├── AuthenticationError     (401)
    │   ├── InsufficientCreditError (402)
    │   ├── PermissionDeniedError   (403)
    │   ├── NotFoundError           (404)
    │   ├── RateLimitError          (429, ``retry_after`` seconds or None)
    │   └── ServerError             (5xx)
    ├── SubmissionUnknownError      (a submit may have been accepted: never resubmitted silently)
    ├── TaskFailedError             (the task ended failed or cancelled; carries the task and
    │                                its ``kind``: quota, timeout, moderation, invalid, ...)
    ├── TaskTimeoutError            (waited too long; carries the task id, the task lives on)
    ├── BudgetExceededError         (``max_cost`` reached: the job was not submitted)
    └── DownloadError               (a result could not be downloaded: expired, truncated, exists)
        └── DownloadExpiredError    (the result URL expired before it was saved: 403/410)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from ._models import FailureCause, Task

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DatabaseUnavailableError",
    "DownloadError",
    "DownloadExpiredError",
    "EndpointUnreachableError",
    "InsufficientCreditError",
    "JournalConflictError",
    "NotFoundError",
    "OmnividError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "SubmissionUnknownError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "TransportTimeoutError",
    "ValidationError",
]


class OmnividError(Exception):
    """Root of every omnivid error.

    ``provider``, ``model``, ``task_id`` and ``request_id`` say where it happened, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.task_id = task_id
        self.request_id = request_id

    def _context(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("model", self.model),
                ("task_id", self.task_id),
                ("request_id", self.request_id),
            )
            if value
        ]
        return f" [{', '.join(parts)}]" if parts else ""

    def __str__(self) -> str:
        return f"{self.message}{self._context()}"


class ConfigurationError(OmnividError):
    """The client is not set up to run: a missing API key, an unknown provider or model."""


class DatabaseUnavailableError(ConfigurationError):
    """The database of a shared journal (PostgreSQL) cannot be reached, went away or did not
    answer in time. Nothing is submitted and no request is sent without it (a shared rate
    limit never falls back to a per-process one); the message names the server, never its
    password."""


class ValidationError(OmnividError, ValueError):
    """A request breaks a provider's documented rule; raised before any network traffic.

    The message names the field, the value and the rule, e.g.
    ``duration=7: Omni-Flash-Ext accepts 4, 6, 8 or 10``.
    """

    def __init__(
        self,
        field: str,
        value: Any,
        rule: str,
        *,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}={_short(value)}: {rule}", provider=provider, model=model)


class TransportError(OmnividError):
    """The HTTP exchange failed: connection refused or reset, or the response was cut off."""


class ConnectionFailedError(TransportError):
    """No connection could be opened (refused, unreachable, DNS failure, connect timeout), so
    the request was never sent: nothing was created or billed, and sending it again is safe."""


class TransportTimeoutError(TransportError, TimeoutError):
    """The HTTP exchange timed out."""


class EndpointUnreachableError(TransportError):
    """No request has ever reached the endpoint (connection refused, DNS failure) for a while:
    nothing was sent, so nothing can have been billed. ``url`` is the endpoint's base URL."""

    def __init__(self, message: str, *, url: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.url = url


class APIError(OmnividError):
    """The provider answered with an error status.

    ``status`` is the HTTP status; ``body`` is an excerpt of the raw response text (a non-JSON
    or malformed body still gives an ``APIError``, with ``code`` and ``type`` None).

    The providers' error objects differ: EvoLink sends a string business code
    (``{"code": "model_access_denied", "type": "invalid_request_error"}``) while APIMart sends
    the HTTP status again as an integer and puts the meaningful identifier in ``type``
    (``{"code": 400, "type": "invalid_duration"}``). So that callers can branch on one attribute
    for both providers:

    * ``code`` is the **most specific identifier**: the provider's ``error.code`` when it is a
      word (``model_access_denied``, ``insufficient_quota``), else its ``error.type``
      (``invalid_duration``, ``unsupported_image_count``, ``payment_required``);
    * ``type`` is the provider's ``error.type``, as given;
    * ``wire_code`` is the provider's ``error.code`` as given, as a string (``"400"``,
      ``"model_access_denied"``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        type: str | None = None,
        body: str = "",
        provider: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
        wire_code: str | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, model=model, task_id=task_id, request_id=request_id
        )
        self.status = status
        self.code = code
        self.type = type
        self.body = body
        self.wire_code = wire_code

    def __str__(self) -> str:
        pairs = [("code", self.code)]
        if self.type != self.code:
            pairs.append(("type", self.type))
        detail = ", ".join(f"{k}={v}" for k, v in pairs if v is not None)
        detail = f" ({detail})" if detail else ""
        return f"HTTP {self.status}{detail}: {self.message}{self._context()}"


class BadRequestError(APIError):
    """400: the provider rejected the parameters."""


class AuthenticationError(APIError):
    """401: the API key was refused."""


class InsufficientCreditError(APIError):
    """402: the account's balance or quota is exhausted."""


class PermissionDeniedError(APIError):
    """403: the key may not use this model or resource."""


class NotFoundError(APIError):
    """404: no such task (or endpoint)."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, or None."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the provider failed. ``retry_after`` is the server's ``Retry-After`` hint in
    seconds (a 503 often carries one), or None; a retried read waits at least that long."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class SubmissionUnknownError(OmnividError):
    """A submit failed after its body was sent: the provider may have created (and will bill) it.

    omnivid does not resubmit it unless told to. ``fingerprint`` identifies the request so the
    caller can reconcile it with the provider's dashboard; ``cause`` is the underlying error.
    """

    def __init__(
        self,
        message: str,
        *,
        fingerprint: str,
        cause: BaseException | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.fingerprint = fingerprint
        self.cause = cause


class TaskFailedError(OmnividError):
    """The task reached ``failed`` or ``cancelled``. ``task`` is the terminal task; ``kind``
    says why in one word, whatever the provider or the language of its message: ``quota``
    (upstream quota or capacity temporarily exhausted), ``timeout`` (upstream timeout),
    ``moderation``, ``invalid`` (bad parameters or media), ``cancelled`` or ``unknown``."""

    kind: FailureCause

    def __init__(self, task: Task) -> None:
        super().__init__(
            f"task {task.status.value}: {task.failure_reason}",
            provider=task.provider,
            model=task.model,
            task_id=task.id,
        )
        self.task = task
        self.kind = task.failure_kind or "unknown"


class TaskTimeoutError(OmnividError, TimeoutError):
    """Waiting for a task took longer than allowed. The task still exists: ``task_id`` is set
    and ``task`` is the last snapshot seen (or None)."""

    def __init__(self, message: str, *, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.task = task


class JournalConflictError(ValidationError):
    """A job's key is already in the journal with a different request (or twice in one batch).

    ``field`` is ``"key"`` and ``value`` the key. The job is not submitted: reusing a key for a
    changed request would silently resubmit (and pay for) it.
    """


class BudgetExceededError(OmnividError):
    """``max_cost`` would be passed by this job, so it was not submitted."""


class DownloadError(OmnividError):
    """A result could not be saved: the URL expired, the transfer failed, or the file exists."""


class DownloadExpiredError(DownloadError):
    """The result URL expired before the video was saved: the file server answered 410, or 403
    with its lifetime over (``expires_at`` passed, none given, or the answer says so). The
    task was paid for: ``task_id`` is set; ``url`` is the URL, ``status`` the HTTP status and
    ``expires_at`` the lifetime the provider gave (None when it gave none)."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int,
        expires_at: datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.url = url
        self.status = status
        self.expires_at = expires_at


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
