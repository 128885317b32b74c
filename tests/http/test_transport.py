"""HTTP behaviour over loopback: typed errors per status, retries, and money-safe submits.

Reads (GET) retry on connection errors, timeouts, 429 and 5xx; a submit (POST) retries only on
429 and on connections that never opened. Faults come from the simulator's prompt markers
(``[[fault:500]]``...) or, for wire details it does not produce, from the scripted server.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from wirehelp import Recorder, Reply, Scripted

import omnivid
from omnivid import errors
from omnivid.testing import Simulator

EXT = "Omni-Flash-Ext"
R2V = "gemini-omni-flash-reference-to-video"
MakeClient = Callable[..., omnivid.AsyncClient]


def ext(prompt: str = "a fox in the snow", **fields: Any) -> omnivid.VideoRequest:
    """An Omni-Flash-Ext request."""
    return omnivid.VideoRequest(model=EXT, prompt=prompt, **fields)


def posts(sim: Simulator) -> list[float]:
    """Arrival times of the submits the simulator received."""
    return [r.time for r in sim.request_log if r.method == "POST"]


# --- submits: never resent once the provider may have accepted them -------------------------


@pytest.mark.anyio
async def test_post_not_retried_after_500(sim: Simulator, apimart: omnivid.AsyncClient) -> None:
    """A 500 answer to a submit raises SubmissionUnknownError and the POST is sent once."""
    request = ext("fox [[fault:500]]")
    with pytest.raises(errors.SubmissionUnknownError) as caught:
        await apimart.submit(request)
    assert sim.stats.submits == 1
    assert caught.value.fingerprint == request.fingerprint()
    assert isinstance(caught.value.cause, errors.ServerError)
    assert caught.value.cause.status == 500
    assert apimart.statistics()["ambiguous_submits"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["502", "503", "504"])
async def test_post_not_retried_after_gateway_error(
    sim: Simulator, apimart: omnivid.AsyncClient, fault: str
) -> None:
    """A gateway's HTML 5xx page on a submit is ambiguous too: one POST, no resend."""
    with pytest.raises(errors.SubmissionUnknownError) as caught:
        await apimart.submit(ext(f"fox [[fault:{fault}]]"))
    assert sim.stats.submits == 1
    cause = caught.value.cause
    assert isinstance(cause, errors.ServerError)
    assert cause.status == int(fault) and "nginx" in cause.body


@pytest.mark.anyio
async def test_lost_response_is_surfaced_not_resent(
    sim: Simulator, apimart: omnivid.AsyncClient
) -> None:
    """The provider created the task but the answer was lost: error, and exactly one task."""
    with pytest.raises(errors.SubmissionUnknownError) as caught:
        await apimart.submit(ext("fox [[fault:lost-response]]"))
    assert isinstance(caught.value.cause, errors.TransportError)
    assert sim.stats.submits == 1
    assert len(sim.stats.tasks) == 1
    assert "not resubmitted" in str(caught.value)
    assert caught.value.fingerprint[:16] in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["reset", "malformed"])
async def test_reset_or_unreadable_submit_answer_is_ambiguous(
    sim: Simulator, evolink: omnivid.AsyncClient, fault: str
) -> None:
    """A reset after sending, or an unreadable 200, is not retried: it may have been accepted."""
    request = omnivid.VideoRequest(
        model=R2V, prompt=f"cat [[fault:{fault}]]", images=["https://example.com/a.png"]
    )
    with pytest.raises(errors.SubmissionUnknownError):
        await evolink.submit(request)
    assert sim.stats.submits == 1


@pytest.mark.anyio
async def test_slow_submit_timing_out_is_ambiguous(sim: Simulator, make_client: MakeClient) -> None:
    """A timeout after the body was sent raises SubmissionUnknownError; no second POST."""
    timeouts = omnivid.Timeouts(connect=1.0, read=1.0, total=0.05)
    async with make_client("apimart", timeouts=timeouts) as client:
        with pytest.raises(errors.SubmissionUnknownError) as caught:
            await client.submit(ext("fox [[fault:slow=0.3]]"))
    assert isinstance(caught.value.cause, errors.TransportTimeoutError)
    assert sim.stats.submits == 1
    assert len(sim.stats.tasks) == 1  # it was accepted: exactly why it must not be resent


@pytest.mark.anyio
async def test_resubmit_ambiguous_is_opt_in_and_logged(
    sim: Simulator, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """With resubmit_ambiguous=True a submit after a 500 is resent, with a WARNING."""
    retry = omnivid.RetryPolicy(base_delay=0.001, max_delay=0.001, resubmit_ambiguous=True)
    caplog.set_level(logging.WARNING, logger="omnivid")
    async with make_client("apimart", retry=retry) as client:
        task = await client.submit(ext("fox [[fault:500]]"))
    assert sim.stats.submits == 2
    assert sim.stats.tasks == [task.id]
    assert any("resubmitting as configured" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_post_retried_on_429_honouring_retry_after(
    sim: Simulator, apimart: omnivid.AsyncClient
) -> None:
    """A 429 proves the submit was refused: it is resent after at least Retry-After."""
    sim.configure(retry_after_seconds=0.08)
    task = await apimart.submit(ext("fox [[fault:429]]"))
    first, second = posts(sim)
    assert second - first >= 0.08
    assert sim.stats.submits == 2 and sim.stats.rate_limited == 1
    assert sim.stats.tasks == [task.id]
    assert apimart.statistics()["rate_limited"] == 1


@pytest.mark.anyio
async def test_post_retry_after_http_date_is_capped(
    sim: Simulator, make_client: MakeClient
) -> None:
    """An HTTP-date Retry-After (a second or more away) is capped by retry_after_cap."""
    sim.configure(retry_after="http-date", retry_after_seconds=1.0)
    retry = omnivid.RetryPolicy(base_delay=0.001, retry_after_cap=0.05)
    async with make_client("apimart", retry=retry) as client:
        started = time.monotonic()
        await client.submit(ext("fox [[fault:429]]"))
    first, second = posts(sim)
    assert second - first >= 0.05
    assert time.monotonic() - started < 0.9


@pytest.mark.anyio
async def test_post_gives_up_after_max_retries_of_429(
    sim: Simulator, make_client: MakeClient
) -> None:
    """Persistent 429s end in RateLimitError after max_retries resends; no task is created."""
    async with make_client("apimart", retry=omnivid.RetryPolicy(max_retries=2)) as client:
        with pytest.raises(errors.RateLimitError) as caught:
            await client.submit(ext("fox [[fault:429*9]]"))
    assert caught.value.retry_after == pytest.approx(0.05)
    assert sim.stats.submits == 3 and sim.stats.tasks == []


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_refused_connection_is_retried(recorder: Recorder, method: str) -> None:
    """A refused connection proves nothing was sent: submit and get retry, then fail."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retry = omnivid.RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.001)
    client = omnivid.AsyncClient(
        "apimart",
        api_key="k",
        base_url=f"http://127.0.0.1:{port}",
        session=recorder.session,
        retry=retry,
    )
    async with client:
        with pytest.raises(errors.TransportError) as caught:
            await (client.submit(ext()) if method == "POST" else client.get("task_1"))
    assert not isinstance(caught.value, errors.SubmissionUnknownError)
    assert "cannot connect" in str(caught.value)
    assert recorder.count(method) == 3


# --- each error status ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_400_from_the_provider_is_a_bad_request(
    sim: Simulator, apimart: omnivid.AsyncClient
) -> None:
    """A body the provider rejects (sent raw, past local checks) gives BadRequestError."""
    body = {"model": EXT, "prompt": "p", "duration": 7}
    with pytest.raises(errors.BadRequestError) as caught:
        await apimart.submit(ext("p"), body=body)
    assert (caught.value.status, caught.value.code, caught.value.wire_code) == (
        400,
        "invalid_duration",
        "400",
    )
    assert sim.stats.submits == 1
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "code"), [("apimart", "authentication_error"), ("evolink", "unauthorized")]
)
async def test_401_bad_key(
    sim: Simulator, make_client: MakeClient, provider: str, code: str
) -> None:
    """A refused key gives AuthenticationError, without retrying."""
    sim.configure(api_keys={"the-right-key"})
    async with make_client(provider, api_key="a-wrong-key") as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.get("task_anything")
    assert (caught.value.status, caught.value.code) == (401, code)
    assert sim.stats.polls == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "code"), [("apimart", "payment_required"), ("evolink", "insufficient_quota")]
)
async def test_402_out_of_credit(
    sim: Simulator, make_client: MakeClient, provider: str, code: str
) -> None:
    """A submit past the account's balance gives InsufficientCreditError (not ambiguous)."""
    sim.configure(budgets={sim.api_key: 0.0})
    request = (
        ext()
        if provider == "apimart"
        else omnivid.VideoRequest(model=R2V, prompt="p", images=["https://example.com/a.png"])
    )
    async with make_client(provider) as client:
        with pytest.raises(errors.InsufficientCreditError) as caught:
            await client.submit(request)
    assert (caught.value.status, caught.value.code) == (402, code)
    assert sim.stats.submits == 1


@pytest.mark.anyio
async def test_403_model_access_denied(sim: Simulator, evolink: omnivid.AsyncClient) -> None:
    """EvoLink's 403 model_access_denied is a PermissionDeniedError keeping the code."""
    sim.configure(denied_models={sim.api_key: [R2V]})
    request = omnivid.VideoRequest(model=R2V, prompt="p", images=["https://example.com/a.png"])
    with pytest.raises(errors.PermissionDeniedError) as caught:
        await evolink.submit(request)
    assert (caught.value.status, caught.value.code, caught.value.model) == (
        403,
        "model_access_denied",
        R2V,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_404_unknown_task(sim: Simulator, make_client: MakeClient, provider: str) -> None:
    """An unknown task id gives NotFoundError carrying it, without retrying."""
    async with make_client(provider) as client:
        with pytest.raises(errors.NotFoundError) as caught:
            await client.get("task_does_not_exist")
    assert (caught.value.status, caught.value.task_id) == (404, "task_does_not_exist")
    assert sim.stats.polls == 1


@pytest.mark.anyio
async def test_500_on_reads_exhausts_retries(sim: Simulator, make_client: MakeClient) -> None:
    """A GET failing with 500 every time is retried max_retries times, then ServerError."""
    async with make_client(
        "evolink", retry=omnivid.RetryPolicy(max_retries=2, base_delay=0.001)
    ) as c:
        task = await c.submit(
            omnivid.VideoRequest(
                model=R2V, prompt="p [[fault:500@poll*9]]", images=["https://example.com/a.png"]
            )
        )
        with pytest.raises(errors.ServerError) as caught:
            await c.get(task.id)
    assert (caught.value.status, caught.value.code, caught.value.task_id) == (
        500,
        "internal_error",
        task.id,
    )
    assert sim.stats.polls == 3


# --- reads: retried on transient failures -----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["500*2", "502", "503", "504", "reset", "malformed", "429"])
async def test_get_retries_transient_failures(
    sim: Simulator, apimart: omnivid.AsyncClient, fault: str
) -> None:
    """A poll hit by a 5xx, a reset, a cut body or a 429 is retried and then succeeds."""
    kind, _, times = fault.partition("*")
    task = await apimart.submit(ext(f"fox [[fault:{kind}@poll*{times or 1}]]"))
    got = await apimart.get(task.id)
    assert got.id == task.id
    assert sim.stats.polls == 1 + int(times or 1)


@pytest.mark.anyio
async def test_retries_are_counted(sim: Simulator, apimart: omnivid.AsyncClient) -> None:
    """statistics() counts the polls and retries made."""
    task = await apimart.submit(ext("fox [[fault:500@poll*2]]"))
    await apimart.get(task.id)
    assert apimart.statistics() == {"submits": 1, "polls": 3, "retries": 2}


@pytest.mark.anyio
async def test_get_read_timeout_is_retried(sim: Simulator, make_client: MakeClient) -> None:
    """A poll whose answer is too slow times out and is retried."""
    timeouts = omnivid.Timeouts(connect=1.0, read=1.0, total=0.05)
    async with make_client("apimart", timeouts=timeouts) as client:
        task = await client.submit(ext("fox [[fault:slow=0.3@poll]]"))
        assert (await client.get(task.id)).id == task.id
    assert sim.stats.polls == 2


@pytest.mark.anyio
async def test_get_429_waits_retry_after(sim: Simulator, apimart: omnivid.AsyncClient) -> None:
    """A rate-limited poll is retried no sooner than Retry-After."""
    sim.configure(retry_after_seconds=0.08)
    task = await apimart.submit(ext("fox [[fault:429@poll]]"))
    await apimart.get(task.id)
    first, second = [r.time for r in sim.request_log if r.method == "GET"]
    assert second - first >= 0.08


@pytest.mark.anyio
async def test_max_retries_zero_disables_retries(sim: Simulator, make_client: MakeClient) -> None:
    """max_retries=0: the first transient failure is raised."""
    async with make_client("apimart", retry=omnivid.RetryPolicy(max_retries=0)) as client:
        task = await client.submit(ext("fox [[fault:503@poll]]"))
        with pytest.raises(errors.ServerError):
            await client.get(task.id)
    assert sim.stats.polls == 1


# --- wire details from the scripted server ----------------------------------------------------


def scripted_client(
    scripted: Scripted, provider: str = "apimart", **options: Any
) -> omnivid.AsyncClient:
    """A client on the scripted server with millisecond back-off."""
    options.setdefault("retry", omnivid.RetryPolicy(base_delay=0.001, max_delay=0.001))
    return omnivid.AsyncClient(provider, api_key="sk-test", base_url=scripted.url, **options)


SUBMITTED = {"code": 200, "data": [{"status": "submitted", "task_id": "task_1"}]}
TASK = {"code": 200, "data": {"id": "task_1", "status": "processing", "progress": 10}}


@pytest.mark.anyio
async def test_retry_after_date_in_the_past_retries_at_once(scripted: Scripted) -> None:
    """An HTTP-date Retry-After already past means no extra wait."""
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    scripted.queue(
        Reply(429, {"error": {"code": 429, "type": "rate_limit_error"}}, {"Retry-After": past}),
        Reply(200, SUBMITTED),
    )
    async with scripted_client(scripted) as client:
        started = time.monotonic()
        task = await client.submit(ext())
    assert task.id == "task_1"
    assert time.monotonic() - started < 0.5
    assert scripted.count("POST") == 2


@pytest.mark.anyio
async def test_non_json_4xx_on_submit_is_a_plain_typed_error(scripted: Scripted) -> None:
    """A 400 with an HTML body is a BadRequestError with an excerpt, not an ambiguity."""
    scripted.queue(Reply(400, "<html>Bad Request</html>", {"Content-Type": "text/html"}))
    async with scripted_client(scripted) as client:
        with pytest.raises(errors.BadRequestError) as caught:
            await client.submit(ext())
    assert caught.value.body == "<html>Bad Request</html>"
    assert caught.value.code is None


@pytest.mark.anyio
async def test_unreadable_200_on_get_is_retried_then_reported(scripted: Scripted) -> None:
    """A 200 with a body omnivid cannot read is retried; at the end it is an APIError(200)."""
    scripted.default = Reply(200, '{"code": 200, "data": {"i')
    async with scripted_client(
        scripted, retry=omnivid.RetryPolicy(max_retries=2, base_delay=0.001)
    ) as c:
        with pytest.raises(errors.APIError) as caught:
            await c.get("task_1")
    assert caught.value.status == 200
    assert "malformed task response" in str(caught.value)
    assert scripted.count("GET") == 3


@pytest.mark.anyio
async def test_unexpected_json_shape_is_an_api_error(scripted: Scripted) -> None:
    """Valid JSON of the wrong shape is a malformed-response APIError, never a KeyError."""
    scripted.default = Reply(200, {"code": 200, "data": {"status": "processing"}})
    async with scripted_client(scripted, retry=omnivid.RetryPolicy(max_retries=0)) as client:
        with pytest.raises(errors.APIError, match="malformed task response"):
            await client.get("task_1")


@pytest.mark.anyio
async def test_task_id_is_escaped_in_the_path(scripted: Scripted) -> None:
    """A task id with reserved characters cannot change the path or query."""
    scripted.queue(Reply(200, TASK))
    async with scripted_client(scripted) as client:
        await client.get("a/b?c=d")
    path = scripted.requests[0][1]
    assert path.startswith("/v1/tasks/a%2Fb%3Fc") and "?" not in path


@pytest.mark.anyio
@pytest.mark.parametrize("task_id", ["", "   "])
async def test_empty_task_id_is_refused_locally(scripted: Scripted, task_id: str) -> None:
    """get("") is a ValidationError, not a request to /v1/tasks/."""
    async with scripted_client(scripted) as client:
        with pytest.raises(errors.ValidationError, match="task_id"):
            await client.get(task_id)
    assert scripted.requests == []


@pytest.mark.anyio
async def test_bearer_key_and_json_body_are_sent(scripted: Scripted) -> None:
    """The submit is a JSON POST to /v1/videos/generations with a Bearer key."""
    scripted.queue(Reply(200, SUBMITTED))
    async with scripted_client(scripted) as client:
        await client.submit(ext())
    method, path, headers = scripted.requests[0]
    assert (method, path) == ("POST", "/v1/videos/generations")
    assert headers["Authorization"] == "Bearer sk-test"
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.anyio
async def test_429_pauses_the_whole_account(sim: Simulator, make_client: MakeClient) -> None:
    """After a 429 on one task, requests for other tasks also wait out the Retry-After."""
    sim.configure(retry_after_seconds=0.1)
    async with make_client("apimart", retry=omnivid.RetryPolicy(max_retries=0)) as client:
        limited = await client.submit(ext("a [[fault:429@poll]]"))
        other = await client.submit(ext("b"))
        with pytest.raises(errors.RateLimitError):
            await client.get(limited.id)
        await client.get(other.id)
    rejected, later = [r for r in sim.request_log if r.method == "GET"]
    assert rejected.status == 429 and later.path.endswith(other.id)
    assert later.time - rejected.time >= 0.1


@pytest.mark.anyio
async def test_read_limits_silence_when_there_is_no_total(
    sim: Simulator, make_client: MakeClient
) -> None:
    """With total=None, a poll answer slower than ``read`` times out and is retried."""
    timeouts = omnivid.Timeouts(connect=1.0, read=0.05, total=None)
    async with make_client("apimart", timeouts=timeouts) as client:
        task = await client.submit(ext("fox [[fault:slow=0.3@poll]]"))
        assert (await client.get(task.id)).id == task.id
    assert sim.stats.polls == 2


def test_api_exchanges_use_total_and_connect_limits() -> None:
    """Under a total limit an API exchange arms no per-read timer; without one it does."""
    bounded = omnivid.Timeouts(connect=2.0, read=5.0, total=30.0).client_timeout()
    assert (bounded.total, bounded.sock_connect, bounded.sock_read) == (30.0, 2.0, None)
    unbounded = omnivid.Timeouts(connect=2.0, read=5.0, total=None).client_timeout()
    assert (unbounded.total, unbounded.sock_connect, unbounded.sock_read) == (None, 2.0, 5.0)
