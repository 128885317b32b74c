"""Every example payload of the providers' documents parses to the right Task or error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from wirehelp import SEEDS, Reply, Scripted

import omnivid
from omnivid import errors
from omnivid.providers import get_provider, provider_for_model

ERRORS = [
    # file, HTTP status, class, code (most specific), type, wire code
    ("apimart_error_400.json", 400, errors.BadRequestError, "invalid_request_error", "400"),
    ("apimart_error_400_ja.json", 400, errors.BadRequestError, "invalid_request_error", "400"),
    ("apimart_error_401.json", 401, errors.AuthenticationError, "authentication_error", "401"),
    ("apimart_error_401_ja.json", 401, errors.AuthenticationError, "authentication_error", "401"),
    ("apimart_error_402.json", 402, errors.InsufficientCreditError, "payment_required", "402"),
    ("apimart_error_402_ja.json", 402, errors.InsufficientCreditError, "payment_required", "402"),
    ("apimart_error_429.json", 429, errors.RateLimitError, "rate_limit_error", "429"),
    ("apimart_error_429_ja.json", 429, errors.RateLimitError, "rate_limit_error", "429"),
    ("evolink_error_400.json", 400, errors.BadRequestError, "invalid_request", "invalid_request"),
    ("evolink_error_401.json", 401, errors.AuthenticationError, "unauthorized", "unauthorized"),
    (
        "evolink_error_402.json",
        402,
        errors.InsufficientCreditError,
        "insufficient_quota",
        "insufficient_quota",
    ),
    (
        "evolink_error_403.json",
        403,
        errors.PermissionDeniedError,
        "model_access_denied",
        "model_access_denied",
    ),
    (
        "evolink_error_429.json",
        429,
        errors.RateLimitError,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ),
    ("evolink_error_500.json", 500, errors.ServerError, "internal_error", "internal_error"),
]

REQUESTS = [
    "apimart_ext_request_4k_short.json",
    "apimart_ext_request_curl.json",
    "apimart_ext_request_image_to_video.json",
    "apimart_ext_request_reference_video.json",
    "apimart_ext_request_text_to_video.json",
    "apimart_ext_request_three_image_fusion.json",
    "apimart_gemini_request_curl.json",
    "apimart_gemini_request_image_to_video.json",
    "apimart_gemini_request_text_to_video.json",
    "apimart_gemini_request_video_to_video.json",
    "evolink_request_reference_to_video.json",
]

TASKS = [
    "apimart_ext_task_completed.json",
    "apimart_ext_task_failed.json",
    "apimart_gemini_task_completed.json",
    "evolink_task_completed.json",
    "evolink_task_failed.json",
]

SUBMITS = ["apimart_submit_200.json", "evolink_submit_200.json"]

_WIRE_TO_DOMAIN = {"image_urls": "images", "video_urls": "videos"}


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def test_every_seed_fixture_is_covered() -> None:
    """Each JSON file in tests/fixtures/seeds is exercised by a test in this module."""
    covered = {e[0] for e in ERRORS} | set(REQUESTS) | set(TASKS) | set(SUBMITS)
    assert {p.name for p in SEEDS.glob("*.json")} == covered


@pytest.mark.parametrize(("name", "status", "cls", "code", "wire_code"), ERRORS)
def test_error_seed_parses_to_typed_error(
    seed: Callable[[str], Any],
    name: str,
    status: int,
    cls: type[errors.APIError],
    code: str,
    wire_code: str,
) -> None:
    """A documented error body becomes its typed APIError with code, type and message kept."""
    provider = get_provider(name.split("_")[0])
    text = (SEEDS / name).read_text(encoding="utf-8")
    err = provider.error_from_response(status, text)
    wire = seed(name)["error"]
    assert type(err) is cls
    assert (err.status, err.code, err.type, err.wire_code) == (
        status,
        code,
        wire["type"],
        wire_code,
    )
    assert err.message == wire["message"]
    assert err.provider == provider.name


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "status", "cls", "code", "wire_code"), ERRORS)
async def test_error_seed_over_http_raises_typed_error(
    scripted: Scripted,
    name: str,
    status: int,
    cls: type[errors.APIError],
    code: str,
    wire_code: str,
) -> None:
    """The documented error bytes served over HTTP raise the typed error from client.get."""
    provider = name.split("_")[0]
    text = (SEEDS / name).read_text(encoding="utf-8")
    scripted.queue(Reply(status, text))
    retry = omnivid.RetryPolicy(max_retries=0)
    async with omnivid.AsyncClient(provider, api_key="k", base_url=scripted.url, retry=retry) as c:
        with pytest.raises(cls) as caught:
            await c.get("task_x")
    assert (caught.value.code, caught.value.task_id, caught.value.status) == (
        code,
        "task_x",
        status,
    )


@pytest.mark.parametrize("name", REQUESTS)
def test_request_example_builds_the_documented_body(seed: Callable[[str], Any], name: str) -> None:
    """A VideoRequest made from a documented request example builds exactly that JSON body."""
    wire = seed(name)
    request = omnivid.VideoRequest.from_dict(
        {_WIRE_TO_DOMAIN.get(k, k): v for k, v in wire.items()}
    )
    assert provider_for_model(request.model).build_submit_body(request) == wire


def test_apimart_submit_seed(seed: Callable[[str], Any]) -> None:
    """APIMart's submit answer (data is a list) gives a pending task with the task_id."""
    request = omnivid.VideoRequest(model="Omni-Flash-Ext", prompt="p")
    task = get_provider("apimart").parse_submit(seed("apimart_submit_200.json"), request)
    assert (task.id, task.provider, task.model, task.status) == (
        "task_01KS1H7ZYSJWH1N779S2FSHTKA",
        "apimart",
        "Omni-Flash-Ext",
        omnivid.TaskStatus.PENDING,
    )


def test_evolink_submit_seed(seed: Callable[[str], Any]) -> None:
    """EvoLink's submit answer gives the task with its estimate, reserved credits and time."""
    data = seed("evolink_submit_200.json")
    request = omnivid.VideoRequest(model="gemini-omni-flash-reference-to-video", prompt="p")
    task = get_provider("evolink").parse_submit(data, request)
    assert task.id == "task-unified-1757169743-7cvnl5zw"
    assert task.status is omnivid.TaskStatus.PENDING
    assert (task.estimated_seconds, task.credits, task.progress) == (60, 102.34, 0)
    assert task.created_at == _utc(1757169743)
    assert task.raw == data


def test_apimart_ext_completed_seed(seed: Callable[[str], Any]) -> None:
    """The Omni-Flash-Ext completed example: times, cost, credits and the list-form URL."""
    data = seed("apimart_ext_task_completed.json")
    task = get_provider("apimart").parse_task(data)
    assert task.status is omnivid.TaskStatus.COMPLETED and task.is_terminal
    assert (task.progress, task.estimated_seconds, task.actual_seconds) == (100, 600, 240)
    assert (task.cost, task.credits) == (0.4, 4)
    assert (task.created_at, task.completed_at) == (_utc(1779246294), _utc(1779246534))
    assert task.videos == (
        omnivid.Video("https://cdn.example.com/videos/abc.mp4", _utc(1779332760)),
    )
    assert task.error is None
    assert task.raw == data["data"]


def test_apimart_ext_failed_seed(seed: Callable[[str], Any]) -> None:
    """The Omni-Flash-Ext failed example keeps error code and message, cost 0, no videos."""
    task = get_provider("apimart").parse_task(seed("apimart_ext_task_failed.json"))
    assert task.status is omnivid.TaskStatus.FAILED
    assert task.error == omnivid.TaskError(
        "task_failed", "invalid duration 7, must be one of 4/6/8/10"
    )
    assert (task.cost, task.videos) == (0, ())


def test_apimart_gemini_completed_seed(seed: Callable[[str], Any]) -> None:
    """The gemini-omni-flash-preview completed example: 40 s actual, cost 1.0, 10 credits."""
    task = get_provider("apimart").parse_task(seed("apimart_gemini_task_completed.json"))
    assert (task.actual_seconds, task.estimated_seconds, task.cost, task.credits) == (
        40,
        60,
        1.0,
        10,
    )
    assert task.video_urls == ["https://cdn.example.com/gemini_omni_xxx.mp4"]
    assert task.completed_at == _utc(1779246334)


def test_apimart_plain_string_url_is_accepted(seed: Callable[[str], Any]) -> None:
    """APIMart's other documented form, url as a plain string, gives the same video."""
    data = seed("apimart_gemini_task_completed.json")
    data["data"]["result"]["videos"][0]["url"] = "https://cdn.example.com/gemini_omni_xxx.mp4"
    task = get_provider("apimart").parse_task(data)
    assert task.video_urls == ["https://cdn.example.com/gemini_omni_xxx.mp4"]


def test_evolink_completed_seed(seed: Callable[[str], Any]) -> None:
    """EvoLink's completed task: results become videos valid 24 hours."""
    task = get_provider("evolink").parse_task(seed("evolink_task_completed.json"))
    assert task.status is omnivid.TaskStatus.COMPLETED
    assert task.model == "gemini-omni-flash-reference-to-video"
    (video,) = task.videos
    assert video.url == "https://cdn.example.com/videos/abc.mp4"
    assert video.expires_at is not None
    assert video.expires_at - _utc(1757169743) == omnivid.providers.evolink.RESULT_TTL


def test_evolink_failed_seed(seed: Callable[[str], Any]) -> None:
    """EvoLink's failed task keeps the string business code and the message."""
    task = get_provider("evolink").parse_task(seed("evolink_task_failed.json"))
    assert task.status is omnivid.TaskStatus.FAILED
    assert task.error == omnivid.TaskError(
        "content_moderation", "Content moderation rejected the prompt or reference images"
    )
    assert task.videos == ()


@pytest.mark.parametrize("name", TASKS)
def test_task_seed_round_trips_through_the_converter(seed: Callable[[str], Any], name: str) -> None:
    """Each parsed seed task survives converter.unstructure -> structure unchanged."""
    from omnivid._models import converter

    task = get_provider(name.split("_")[0]).parse_task(seed(name))
    again = converter.structure(converter.unstructure(task), omnivid.Task)
    assert again == task


def test_apimart_task_takes_the_submitted_model(seed: Callable[[str], Any]) -> None:
    """APIMart's task body names no model: the caller's submitted model fills it in."""
    data = seed("apimart_ext_task_completed.json")
    assert get_provider("apimart").parse_task(data).model is None
    task = get_provider("apimart").parse_task(data, model="Omni-Flash-Ext")
    assert task.model == "Omni-Flash-Ext"


def test_evolink_task_model_in_the_body_wins(seed: Callable[[str], Any]) -> None:
    """EvoLink's task body names its model; that one is kept over the caller's."""
    data = seed("evolink_task_completed.json")
    task = get_provider("evolink").parse_task(data, model="something-else")
    assert task.model == data["model"]
