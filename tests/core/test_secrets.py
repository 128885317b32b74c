"""The API key never appears in a repr, a log record (DEBUG included) or an exception's text."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from wirehelp import Reply, Scripted

import omnivid
from omnivid import errors
from omnivid.testing import Simulator

KEY = "sk-live-DO-NOT-LEAK-4f9a2c7e1b"
WRONG_KEY = "sk-live-ALSO-SECRET-88d0e3"
GEMINI = "gemini-omni-flash-preview"
MakeClient = Callable[..., omnivid.AsyncClient]


def texts_of(err: BaseException) -> list[str]:
    """Every text an exception shows: str, repr, args, attributes and the formatted chain."""
    out = ["".join(traceback.format_exception(err))]
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return out


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_api_key_never_leaks(
    sim: Simulator,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Submit, poll, retry, fail, time out and download at DEBUG; the key shows up nowhere."""
    caplog.set_level(logging.DEBUG)
    for name in ("omnivid", "aiohttp", "aiohttp.client", "aiohttp.internal", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    sim.configure(api_keys={KEY})
    raised: list[BaseException] = []
    shown: list[str] = []

    async def expect(exc_type: type[BaseException], call: object) -> None:
        with pytest.raises(exc_type) as caught:
            await call  # type: ignore[misc]
        raised.append(caught.value)

    resubmit = omnivid.RetryPolicy(base_delay=0.001, max_delay=0.001, resubmit_ambiguous=True)
    async with make_client("apimart", api_key=KEY) as client:
        shown += [repr(client), repr(client.transport), repr(client.provider), repr(client.gate)]
        shown += [repr(client.retry), repr(client.timeouts), repr(client.poll), str(client)]
        request = omnivid.VideoRequest(
            model=GEMINI, prompt="apple [[fault:500@poll]] [[fault:429@poll]]"
        )
        shown += [repr(request), str(request.to_dict())]
        task = await client.generate(request)
        shown += [repr(task), repr(task.raw)]
        (saved,) = await client.download(task, tmp_path)
        saved.write_bytes(b"not the video")  # a file in the way: a DownloadError
        await expect(errors.DownloadError, client.download(task, tmp_path))
        await expect(
            errors.SubmissionUnknownError,
            client.submit(omnivid.VideoRequest(model=GEMINI, prompt="b [[fault:lost-response]]")),
        )
        await expect(errors.NotFoundError, client.get("task_missing"))
        await expect(
            errors.TaskFailedError,
            client.generate(omnivid.VideoRequest(model=GEMINI, prompt="c [[fail:moderation]]")),
        )
        slow = await client.submit(omnivid.VideoRequest(model=GEMINI, prompt="d [[duration=999]]"))
        await expect(errors.TaskTimeoutError, client.wait(slow, timeout=0.01))
        await expect(errors.ValidationError, client.submit(omnivid.VideoRequest(model=GEMINI)))
        await expect(
            errors.RateLimitError,
            client.submit(omnivid.VideoRequest(model=GEMINI, prompt="e [[fault:429*9]]")),
        )
    async with make_client("apimart", api_key=KEY, retry=resubmit) as client:
        await client.submit(omnivid.VideoRequest(model=GEMINI, prompt="f [[fault:500]]"))
    async with make_client("evolink", api_key=WRONG_KEY) as client:
        await expect(errors.AuthenticationError, client.get("task-x"))
    unreachable = omnivid.AsyncClient(
        "apimart",
        api_key=KEY,
        base_url=f"http://127.0.0.1:{closed_port()}",
        retry=omnivid.RetryPolicy(max_retries=1, base_delay=0.001),
    )
    async with unreachable:
        await expect(errors.TransportError, unreachable.get("task_1"))

    assert len(raised) == 9
    shown += [text for err in raised for text in texts_of(err)]
    shown += [caplog.text]
    shown += [r.getMessage() + repr(r.args) + repr(r.__dict__) for r in caplog.records]
    assert any(r.name == "omnivid" for r in caplog.records)  # DEBUG logging did run
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    for text in shown:
        assert KEY not in text
        assert WRONG_KEY not in text
        assert "DO-NOT-LEAK" not in text


def test_missing_key_error_does_not_echo_other_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The missing-key error names the variable, not any other provider's key."""
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    monkeypatch.setenv("APIMART_API_KEY", KEY)
    with pytest.raises(errors.ConfigurationError) as caught:
        omnivid.AsyncClient("evolink")
    assert all(KEY not in text for text in texts_of(caught.value))


# --- server text echoing the key, keys that cannot be sent, private exception classes -----

ECHO = f"invalid token {KEY}: this key is not recognised"


def everything_in(path: Path) -> bytes:
    """The bytes of a journal and its WAL/SHM side files."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_a_key_echoed_in_an_error_body_is_redacted(
    scripted: Scripted, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    """A 401 body quoting the key: the AuthenticationError (message, body, str, repr, chain)
    and every log record show <redacted> instead."""
    caplog.set_level(logging.DEBUG)
    body = {"error": {"code": "unauthorized", "message": ECHO, "type": "authentication_error"}}
    scripted.queue(Reply(401, body))
    retry = omnivid.RetryPolicy(max_retries=0)
    async with omnivid.AsyncClient(
        provider, api_key=KEY, base_url=scripted.url, retry=retry
    ) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.get("task_1")
    texts = [*texts_of(caught.value), caught.value.body, caplog.text]
    assert "<redacted>" in caught.value.message and "<redacted>" in caught.value.body
    assert all(KEY not in text and "DO-NOT-LEAK" not in text for text in texts)


@pytest.mark.anyio
async def test_a_key_echoed_in_a_task_body_stays_out_of_the_journal(
    scripted: Scripted, tmp_path: Path
) -> None:
    """A failed task whose message quotes the key: the outcome's error, the journal's row and
    the task-status text it keeps all hold <redacted>, never the key."""
    scripted.queue(
        Reply(200, {"code": 200, "data": [{"status": "submitted", "task_id": "task_1"}]}),
        Reply(
            200,
            {
                "code": 200,
                "data": {
                    "id": "task_1",
                    "status": "failed",
                    "progress": 0,
                    "error": {"code": "task_failed", "message": ECHO},
                },
            },
        ),
    )
    journal = tmp_path / "jobs.sqlite"
    request = omnivid.VideoRequest(model="Omni-Flash-Ext", prompt="p")
    async with (
        omnivid.AsyncClient(
            "apimart", api_key=KEY, base_url=scripted.url, time_scale=0.001
        ) as client,
        client.map([("a", request)], journal=journal, resubmit=None) as outcomes,
    ):
        (outcome,) = [o async for o in outcomes]
    assert outcome.error is not None and "<redacted>" in str(outcome.error)
    assert outcome.task is not None and KEY not in repr(outcome.task.raw)
    stored = everything_in(journal)
    assert b"<redacted>" in stored
    assert KEY.encode() not in stored and b"DO-NOT-LEAK" not in stored


def test_short_keys_are_not_hunted_for() -> None:
    """A key under 8 characters (a test key such as "k") is not replaced in answers, which
    would blank out every "k" of a body; real keys are far longer."""
    from omnivid._http.transport import _MIN_SECRET

    assert _MIN_SECRET == 8 and len(KEY) >= _MIN_SECRET


@pytest.mark.parametrize(
    "bad", [KEY + "\n", f" {KEY}", KEY.replace("-", " ", 1), KEY + "\t", KEY + "\r\n", KEY + "é"]
)
def test_a_key_with_whitespace_is_a_configuration_error(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with whitespace, a newline or a non-ASCII character is a ConfigurationError (not
    aiohttp's ValueError at the first request), naming where it came from, never the key."""
    with pytest.raises(errors.ConfigurationError, match=r"\(api_key\) holds whitespace") as arg:
        omnivid.AsyncClient("apimart", api_key=bad)
    monkeypatch.setenv("EVOLINK_API_KEY", bad)
    with pytest.raises(errors.ConfigurationError, match=r"\(EVOLINK_API_KEY\)") as env:
        omnivid.AsyncClient("evolink")
    for caught in (arg, env):
        assert all(KEY not in text and "DO-NOT-LEAK" not in text for text in texts_of(caught.value))


def _public(exc: BaseException) -> bool:
    """Whether an exception's class is one omnivid.errors exports."""
    return type(exc).__module__ == "omnivid.errors" and type(exc).__name__ in errors.__all__


@pytest.mark.anyio
@pytest.mark.parametrize("retries", [0, 2])
async def test_no_private_exception_escapes_a_failed_connection(retries: int) -> None:
    """get, submit and generate against a closed port raise a public error class
    (ConnectionFailedError, a TransportError), with or without retries; never _NotSent."""
    retry = omnivid.RetryPolicy(max_retries=retries, base_delay=0.001, max_delay=0.001)
    client = omnivid.AsyncClient(
        "apimart", api_key=KEY, base_url=f"http://127.0.0.1:{closed_port()}", retry=retry
    )
    request = omnivid.VideoRequest(model=GEMINI, prompt="p")
    raised: list[BaseException] = []
    async with client:
        for call in (client.get("task_1"), client.submit(request), client.generate(request)):
            with pytest.raises(errors.TransportError) as caught:
                await call
            raised.append(caught.value)
    assert all(_public(exc) for exc in raised), [type(e) for e in raised]
    assert all(isinstance(exc, errors.ConnectionFailedError) for exc in raised)
