"""The API key never appears in a repr, a log record (DEBUG included) or an exception's text."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

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
        await client.download(task, tmp_path)
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
