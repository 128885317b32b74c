"""A batch against an endpoint no request has ever reached (a closed loopback port): reported
within about 30 provider seconds (30 ms at time_scale=0.001, with the default retry policy),
naming the URL, with ``retrying`` events meanwhile; every job ends with one outcome."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import pytest
from schedhelp import collect, gemini

import omnivid
from omnivid import Journal, Task
from omnivid.errors import EndpointUnreachableError

pytestmark = pytest.mark.anyio


def closed_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("scale", [0.001, 0.004])
async def test_twelve_jobs_end_within_the_scaled_deadline(scale: float) -> None:
    """12 jobs end not submitted, naming the URL, about 30 scaled seconds after the start."""
    url = closed_url()
    events: list[omnivid.Event] = []
    # (no adaptive rate: its slow start spaces tries 50 real ms apart, beyond the point)
    client = omnivid.AsyncClient(
        "apimart", api_key="sk-test", base_url=url, time_scale=scale, adaptive_rate=False
    )
    started = time.monotonic()
    with anyio.fail_after(10):  # (it took 367 s before)
        async with (
            client,
            client.map([gemini(i) for i in range(12)], on_event=events.append) as out,
        ):
            got = await collect(out)
            stats = out.statistics()
    elapsed = time.monotonic() - started
    assert 30 * scale <= elapsed < 30 * scale + 2.0
    assert len(got) == 12 and all(isinstance(o.error, EndpointUnreachableError) for o in got)
    assert all(url in str(o.error) and o.task_id is None for o in got)
    assert sum(e.kind == "not_submitted" for e in events) == 12
    assert stats.stopped is not None and url in stats.stopped
    assert stats.submits >= 12 and stats.polls == 0


async def test_retrying_events_name_the_url_meanwhile() -> None:
    """A not_reached event at the first failure, then each requeue's event, name the URL."""
    url = closed_url()
    events: list[omnivid.Event] = []
    client = omnivid.AsyncClient(
        "apimart",
        api_key="sk-test",
        base_url=url,
        time_scale=0.002,
        adaptive_rate=False,
        retry=omnivid.RetryPolicy(max_retries=0),  # (the transport's retries off: each shows)
    )
    with anyio.fail_after(10):
        async with client, client.map([gemini(0)], on_event=events.append) as out:
            (outcome,) = await collect(out)
    first, *requeues = [e for e in events if e.kind == "retrying"]
    assert first.key is None and first.detail["reason"] == "not_reached"
    assert url in first.detail["error"]
    assert first.detail["until"] == pytest.approx(first.at + 30 * 0.002, abs=0.01)
    assert requeues and all(e.detail["reason"] == "not_sent" for e in requeues)
    assert all(url in e.detail["error"] and e.key == 0 for e in requeues)
    assert events[-1].kind == "not_submitted" and isinstance(
        outcome.error, EndpointUnreachableError
    )


async def test_the_first_failure_is_told_even_with_the_default_client() -> None:
    """With the default client, one not_reached event comes before any outcome."""
    url = closed_url()
    events: list[omnivid.Event] = []
    client = omnivid.AsyncClient("apimart", api_key="sk-test", base_url=url, time_scale=0.001)
    with anyio.fail_after(10):
        async with client, client.map([gemini(i) for i in range(3)], on_event=events.append) as out:
            await collect(out)
    told = [e for e in events if e.kind == "retrying" and e.key is None]
    assert len(told) == 1 and url in told[0].detail["error"]
    assert events.index(told[0]) < min(i for i, e in enumerate(events) if e.terminal)


async def test_a_resumed_task_keeps_its_id_when_the_endpoint_is_unreachable(
    tmp_path: Path,
) -> None:
    """A resumed task on an unreachable endpoint ends keeping its id, journaled submitted."""
    journal = tmp_path / "journal.sqlite"
    request = gemini(0)
    with Journal.open(journal) as j:
        j.record_intent("k0", request, provider="apimart", reserved=1.0)
        task = Task(id="task_kept", provider="apimart", model=request.model)
        j.record_submitted("k0", task, task_ids=["task_kept"], attempts=1)
    client = omnivid.AsyncClient(
        "apimart", api_key="sk-test", base_url=closed_url(), time_scale=0.001
    )
    with anyio.fail_after(10):
        async with client, client.map([("k0", request)], journal=journal) as out:
            (outcome,) = await collect(out)
    assert isinstance(outcome.error, EndpointUnreachableError)
    assert outcome.task_id == "task_kept"
    with Journal.open(journal) as j:
        entry = j.get("k0")
        assert entry is not None and entry.state == "submitted" and entry.task_id == "task_kept"
