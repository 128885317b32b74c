"""CallbackReceiver without a provider round trip: configuration, tokens, store, redaction."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

import pytest

from omnivid import AsyncClient, PollPolicy
from omnivid.errors import ConfigurationError, ValidationError
from omnivid.integrations import (
    DEFAULT_FALLBACK_POLL,
    CallbackReceiver,
    MemoryTokenStore,
    RedactTokens,
    TokenRecord,
    TokenStore,
    redact,
    redact_access_logs,
    token_digest,
)

URL = "https://app.example.com/omnivid/callbacks"


def evolink(receiver: CallbackReceiver, **options: Any) -> AsyncClient:
    return AsyncClient("evolink", api_key="sk-test", callbacks=receiver, **options)


def body(task_id: str) -> bytes:
    return json.dumps({"id": task_id, "status": "completed"}).encode()


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_provider_without_callbacks_is_refused() -> None:
    """APIMart has no callback_url, so callbacks= is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="apimart does not call back"):
        AsyncClient("apimart", api_key="sk-test", callbacks=CallbackReceiver(URL))


def test_loopback_public_url_needs_allow_private_callbacks() -> None:
    """A receiver on 127.0.0.1 is refused as EvoLink would refuse it, naming public_url."""
    receiver = CallbackReceiver("http://127.0.0.1:8080/cb")
    with pytest.raises(ValidationError) as caught:
        evolink(receiver)
    assert caught.value.field == "public_url"
    assert caught.value.value == "http://127.0.0.1:8080/cb"
    assert evolink(receiver, allow_private_callbacks=True).callbacks is receiver


@pytest.mark.parametrize(
    "url", ["ftp://app.example.com/cb", "https:///cb", f"{URL}?a=1", f"{URL}#frag"]
)
def test_malformed_public_url_is_a_validation_error(url: str) -> None:
    """public_url must be http(s) with a host and no query or fragment."""
    with pytest.raises(ValidationError) as caught:
        CallbackReceiver(url)
    assert caught.value.field == "public_url"


def test_one_receiver_serves_one_client() -> None:
    """Attaching a second live client is a ConfigurationError."""
    receiver = CallbackReceiver(URL)
    evolink(receiver)
    with pytest.raises(ConfigurationError, match="already serves another client"):
        evolink(receiver)


@pytest.mark.anyio
async def test_closed_client_frees_the_receiver() -> None:
    """After the first client closes, another may attach."""
    receiver = CallbackReceiver(URL)
    async with evolink(receiver):
        pass
    assert evolink(receiver).callbacks is receiver


def test_client_polls_by_the_fallback_policy() -> None:
    """Without poll=, a client with callbacks polls at the receiver's long interval."""
    client = evolink(CallbackReceiver(URL))
    assert client.poll == DEFAULT_FALLBACK_POLL
    assert client.poll.floor >= 120 and client.poll.min_interval >= 120


def test_explicit_poll_policy_wins_and_is_scaled() -> None:
    """poll= overrides the fallback; time_scale scales whichever applies."""
    mine = PollPolicy(floor=7)
    assert evolink(CallbackReceiver(URL), poll=mine).poll == mine
    scaled = evolink(CallbackReceiver(URL), time_scale=0.01).poll
    assert scaled == DEFAULT_FALLBACK_POLL.scaled(0.01)


def test_prepare_adds_a_fresh_callback_url_to_a_copy_of_the_body() -> None:
    """Each prepare gives a new token in callback_url and leaves the caller's body untouched."""
    receiver = CallbackReceiver(URL)
    evolink(receiver)
    original: dict[str, Any] = {"model": "m"}
    token_a, body_a = receiver.prepare("fp", original)
    token_b, _ = receiver.prepare("fp", original)
    assert token_a and token_b and token_a != token_b
    assert body_a["callback_url"] == f"{URL}/{token_a}"
    assert original == {"model": "m"}


def test_prepare_keeps_a_callers_own_callback_url() -> None:
    """A body that already names a callback_url gets no token."""
    receiver = CallbackReceiver(URL)
    evolink(receiver)
    own = {"callback_url": "https://elsewhere.example.com/hook"}
    assert receiver.prepare("fp", own) == (None, own)


@pytest.mark.anyio
async def test_store_keeps_only_the_digest() -> None:
    """bind stores sha256(token), never the token, and repr shows neither."""
    store = MemoryTokenStore()
    receiver = CallbackReceiver(URL, store=store)
    evolink(receiver)
    token, _ = receiver.prepare("fp", {})
    assert token is not None
    await receiver.bind("task-1", token)
    record = await store.get("task-1")
    assert record is not None
    assert record.digest == hashlib.sha256(token.encode()).hexdigest() == token_digest(token)
    assert token not in repr(record) and record.digest not in repr(record)
    assert token not in repr(receiver) and token not in repr(store)


@pytest.mark.anyio
async def test_callback_racing_its_submit_answer_gets_409() -> None:
    """A genuine token whose submit has not answered yet is asked to retry (no read-back)."""
    receiver = CallbackReceiver(URL)
    evolink(receiver)
    token, _ = receiver.prepare("fp", {})
    assert token is not None
    reply = await receiver.handle(token, body("task-early"))
    assert reply.status == 409
    assert receiver.stats["early"] == 1


@pytest.mark.anyio
async def test_token_of_a_definitely_failed_submit_is_dropped() -> None:
    """After a submit the provider refused, its token is unknown (403)."""
    receiver = CallbackReceiver(URL)
    evolink(receiver)
    token, _ = receiver.prepare("fp", {})
    assert token is not None
    receiver.submit_failed(token, ambiguous=False)
    reply = await receiver.handle(token, body("task-x"))
    assert reply.status == 403
    assert receiver.stats["unknown"] == 1


def test_take_wake_is_true_once() -> None:
    """A pending wake-up is consumed by the first waiter only."""
    receiver = CallbackReceiver(URL)
    receiver._remember(receiver._wakes, "task-1", None)
    assert receiver.take_wake("task-1") is True
    assert receiver.take_wake("task-1") is False


@pytest.mark.anyio
async def test_memory_store_records_expire_after_ttl() -> None:
    """A record older than ttl is gone."""
    clock = Clock()
    store = MemoryTokenStore(ttl=100, clock=clock)
    await store.put("t", TokenRecord("d", created_at=clock.now))
    clock.now += 99
    assert await store.get("t") is not None
    clock.now += 2
    assert await store.get("t") is None


@pytest.mark.anyio
async def test_memory_store_drops_the_oldest_beyond_max_entries() -> None:
    """With max_entries=2, a third record evicts the first."""
    store = MemoryTokenStore(max_entries=2)
    for name in ("a", "b", "c"):
        await store.put(name, TokenRecord(name, created_at=store._clock()))
    assert await store.get("a") is None
    assert await store.get("b") is not None and await store.get("c") is not None
    assert len(store) == 2


@pytest.mark.anyio
async def test_memory_store_confirm_is_idempotent() -> None:
    """confirm keeps the first confirmation time and ignores unknown ids."""
    store = MemoryTokenStore()
    assert isinstance(store, TokenStore)
    await store.put("t", TokenRecord("d", created_at=store._clock()))
    await store.confirm("t", 5.0)
    await store.confirm("t", 9.0)
    await store.confirm("missing", 9.0)
    record = await store.get("t")
    assert record is not None and record.confirmed_at == 5.0


def test_redact_replaces_token_segments_only() -> None:
    """Token-shaped path segments become <redacted>; other segments stay."""
    token = secrets.token_urlsafe(32)
    line = f'POST /omnivid/callbacks/{token} HTTP/1.1" 200 /videos/task-unified-1'
    assert redact(line) == 'POST /omnivid/callbacks/<redacted> HTTP/1.1" 200 /videos/task-unified-1'


def test_access_log_filter_redacts_formatted_and_argument_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both aiohttp-style (preformatted) and uvicorn-style (%-args) records lose the token."""
    token = secrets.token_urlsafe(32)
    logger = logging.getLogger("omnivid.tests.access")
    installed = redact_access_logs("omnivid.tests.access")
    try:
        assert redact_access_logs("omnivid.tests.access") is not installed
        assert sum(isinstance(f, RedactTokens) for f in logger.filters) == 1
        with caplog.at_level(logging.INFO, logger="omnivid.tests.access"):
            logger.info(f"127.0.0.1 POST /cb/{token} 200")
            logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "POST", f"/cb/{token}", "1.1", 200)
    finally:
        logger.removeFilter(installed)
    assert len(caplog.records) == 2
    assert all(token not in r.getMessage() for r in caplog.records)
    assert all("/cb/<redacted>" in r.getMessage() for r in caplog.records)
