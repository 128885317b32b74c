"""The error hierarchy and the mapping of error responses to typed errors."""

from __future__ import annotations

import json

import pytest

import omnivid
from omnivid import errors
from omnivid.providers import get_provider

APIMART = get_provider("apimart")
EVOLINK = get_provider("evolink")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (402, errors.InsufficientCreditError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.ServerError),
        (504, errors.ServerError),
        (409, errors.APIError),
        (418, errors.APIError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[errors.APIError]) -> None:
    """Each HTTP status gives its documented error class (other 4xx: plain APIError)."""
    err = EVOLINK.error_from_response(status, '{"error": {"code": "x", "message": "m"}}')
    assert type(err) is cls
    assert err.status == status


def test_apimart_ext_type_is_the_code() -> None:
    """APIMart's numeric code defers to its type: invalid_duration lands in .code and .type."""
    body = {"error": {"code": 400, "message": "时长无效", "type": "invalid_duration"}}
    err = APIMART.error_from_response(400, json.dumps(body, ensure_ascii=False))
    assert isinstance(err, errors.BadRequestError)
    assert (err.code, err.type, err.wire_code) == ("invalid_duration", "invalid_duration", "400")


@pytest.mark.parametrize(
    "kind", ["invalid_resolution", "unsupported_image_count", "unsupported_video_count"]
)
def test_apimart_ext_400_types_are_kept(kind: str) -> None:
    """Every documented Omni-Flash-Ext 400 type is exposed as the error's code."""
    body = json.dumps({"error": {"code": 400, "message": "x", "type": kind}})
    assert APIMART.error_from_response(400, body).code == kind


def test_evolink_string_code_wins_over_type() -> None:
    """EvoLink's string business code stays in .code while .type keeps the category."""
    body = {
        "error": {"code": "model_access_denied", "message": "m", "type": "invalid_request_error"}
    }
    err = EVOLINK.error_from_response(403, json.dumps(body))
    assert (err.code, err.type, err.wire_code) == (
        "model_access_denied",
        "invalid_request_error",
        "model_access_denied",
    )


@pytest.mark.parametrize(
    "text",
    [
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "",
        "not json at all",
        '{"error": "flat string"}',
        "[1, 2, 3]",
        '{"error": {"code": null, "message": null}}',
        '{"error": {"message": "cut in ha',
        "null",
    ],
)
def test_malformed_error_body_is_still_an_api_error(text: str) -> None:
    """A non-JSON or oddly shaped body gives an APIError with status and excerpt, never a crash."""
    err = APIMART.error_from_response(502, text)
    assert isinstance(err, errors.ServerError)
    assert err.status == 502
    assert err.body == text[:500]
    assert err.message == (text.strip()[:200] or "(empty body)")
    assert "HTTP 502" in str(err)


def test_top_level_message_is_used_when_no_error_object() -> None:
    """A body like {"code": 500, "message": "..."} still yields its message."""
    err = APIMART.error_from_response(500, '{"code": 500, "message": "upstream down"}')
    assert err.message == "upstream down"
    assert err.code is None


def test_long_body_is_excerpted() -> None:
    """The body kept on the error is cut to 500 characters and the message to 200."""
    text = "x" * 5000
    err = EVOLINK.error_from_response(500, text)
    assert (len(err.body), len(err.message)) == (500, 200)


def test_rate_limit_error_carries_retry_after() -> None:
    """A 429 becomes RateLimitError with the server's Retry-After seconds."""
    err = EVOLINK.error_from_response(429, "{}", retry_after=2.5, request_id="req_1")
    assert isinstance(err, errors.RateLimitError)
    assert (err.retry_after, err.request_id) == (2.5, "req_1")


def test_api_error_str_names_status_code_type_and_context() -> None:
    """str(APIError) shows status, code, type and where it happened."""
    body = '{"error": {"code": "model_access_denied", "message": "no", "type": "t"}}'
    err = EVOLINK.error_from_response(403, body, model="m", task_id="t1", request_id="r1")
    assert str(err) == (
        "HTTP 403 (code=model_access_denied, type=t): no "
        "[provider=evolink, model=m, task_id=t1, request_id=r1]"
    )


def test_api_error_str_does_not_repeat_type_equal_to_code() -> None:
    """When code came from type (APIMart) the text names it once."""
    err = APIMART.error_from_response(402, '{"error": {"code": 402, "type": "payment_required"}}')
    assert str(err).startswith("HTTP 402 (code=payment_required): ")


def test_validation_error_names_field_value_and_rule() -> None:
    """ValidationError's message is field=value: rule, and it is also a ValueError."""
    err = errors.ValidationError("duration", 7, "accepts 4, 6, 8 or 10", model="Omni-Flash-Ext")
    assert isinstance(err, ValueError)
    assert (err.field, err.value, err.rule) == ("duration", 7, "accepts 4, 6, 8 or 10")
    assert str(err) == "duration=7: accepts 4, 6, 8 or 10 [model=Omni-Flash-Ext]"


def test_validation_error_shortens_long_values() -> None:
    """A huge value (a data URL) is cut in the message, not dumped whole."""
    err = errors.ValidationError("images[0]", "data:" + "A" * 10_000, "bad")
    assert len(str(err)) < 120


def test_timeouts_are_timeout_errors() -> None:
    """TransportTimeoutError and TaskTimeoutError are also builtin TimeoutErrors."""
    assert issubclass(errors.TransportTimeoutError, TimeoutError)
    assert issubclass(errors.TransportTimeoutError, errors.TransportError)
    assert issubclass(errors.TaskTimeoutError, TimeoutError)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_omnivid_error(name: str) -> None:
    """Catching OmnividError catches every omnivid error."""
    assert issubclass(getattr(errors, name), errors.OmnividError)


def test_task_failed_error_carries_the_task() -> None:
    """TaskFailedError keeps the terminal task and explains why in its message."""
    task = omnivid.Task(
        id="t1",
        provider="apimart",
        model="Omni-Flash-Ext",
        status=omnivid.TaskStatus.FAILED,
        error=omnivid.TaskError("task_failed", "content moderation rejected the prompt"),
    )
    err = errors.TaskFailedError(task)
    assert err.task is task
    assert str(err) == (
        "task failed: content moderation rejected the prompt "
        "[provider=apimart, model=Omni-Flash-Ext, task_id=t1]"
    )


def test_task_failed_error_without_reason() -> None:
    """A cancelled task with no error object still gives a readable message."""
    task = omnivid.Task(id="t2", provider="evolink", status=omnivid.TaskStatus.CANCELLED)
    assert str(errors.TaskFailedError(task)).startswith("task cancelled: no reason given")


def test_submission_unknown_error_keeps_fingerprint_and_cause() -> None:
    """SubmissionUnknownError carries the request fingerprint and the underlying error."""
    cause = errors.TransportError("reset")
    err = errors.SubmissionUnknownError("lost", fingerprint="ab" * 32, cause=cause, model="m")
    assert (err.fingerprint, err.cause, err.model) == ("ab" * 32, cause, "m")
