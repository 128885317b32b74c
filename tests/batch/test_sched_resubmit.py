"""Resubmission of failed tasks: by cause, bounded, configurable, with a user predicate."""

from __future__ import annotations

import pytest
from schedhelp import client, collect, gemini

import omnivid
from omnivid import ResubmitPolicy, Task, TaskError, TaskStatus
from omnivid.errors import TaskFailedError
from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

FAST = ResubmitPolicy(max_attempts=3, base_delay=1.0)


async def test_transient_failure_is_resubmitted_until_success(sim: Simulator) -> None:
    """An upstream-quota failure is resubmitted; the second task completes."""
    sim.configure(fail_quota_rate=1.0)

    def on_event(event: omnivid.Event) -> None:
        if event.kind == "retrying":
            sim.configure(fail_quota_rate=0.0)

    async with client(sim) as c, c.map([gemini(0)], resubmit=FAST, on_event=on_event) as out:
        (outcome,) = await collect(out)
    assert outcome.ok and outcome.attempts == 2 and len(outcome.task_ids) == 2
    assert outcome.task_id == outcome.task_ids[-1]


async def test_transient_failures_stop_at_max_attempts(sim: Simulator) -> None:
    """A job failing for quota every time gets max_attempts tasks, then a failed outcome."""
    async with client(sim) as c, c.map([gemini(0, "[[fail:quota]]")], resubmit=FAST) as out:
        (outcome,) = await collect(out)
    assert isinstance(outcome.error, TaskFailedError)
    assert outcome.attempts == 3 and len(set(outcome.task_ids)) == 3
    assert outcome.task is not None and outcome.task.status is TaskStatus.FAILED


@pytest.mark.parametrize("marker", ["[[fail:moderation]]", "[[cancel]]"])
async def test_permanent_failures_are_never_resubmitted(sim: Simulator, marker: str) -> None:
    """Moderation and cancellation are permanent: one task, a failed outcome."""
    async with client(sim) as c, c.map([gemini(0, marker)], resubmit=FAST) as out:
        (outcome,) = await collect(out)
    assert isinstance(outcome.error, TaskFailedError) and outcome.attempts == 1
    assert len(sim.stats.tasks) == 1


async def test_resubmit_none_never_resubmits(sim: Simulator) -> None:
    """resubmit=None turns resubmission off."""
    async with client(sim) as c, c.map([gemini(0, "[[fail:quota]]")], resubmit=None) as out:
        (outcome,) = await collect(out)
    assert outcome.attempts == 1 and len(sim.stats.tasks) == 1


async def test_predicate_decides_instead_of_the_kinds(sim: Simulator) -> None:
    """A user predicate can resubmit what the kinds would not (here: moderation)."""
    seen: list[str] = []

    def predicate(task: Task, kind: str) -> bool:
        seen.append(kind)
        return True

    policy = ResubmitPolicy(max_attempts=2, base_delay=1.0, predicate=predicate)
    async with client(sim) as c, c.map([gemini(0, "[[fail:moderation]]")], resubmit=policy) as o:
        (outcome,) = await collect(o)
    assert outcome.attempts == 2 and seen == ["permanent"]  # not asked past max_attempts


async def test_retry_on_can_include_unknown_causes(sim: Simulator) -> None:
    """retry_on decides which failure kinds are resubmitted."""
    policy = ResubmitPolicy(max_attempts=2, base_delay=1.0, retry_on={"permanent"})
    async with client(sim) as c, c.map([gemini(0, "[[fail:moderation]]")], resubmit=policy) as o:
        (outcome,) = await collect(o)
    assert outcome.attempts == 2


async def test_retrying_event_names_the_cause(sim: Simulator) -> None:
    """Each resubmission emits a retrying event with the failure kind and attempt number."""
    events: list[omnivid.Event] = []
    async with (
        client(sim) as c,
        c.map([gemini(0, "[[fail:timeout]]")], resubmit=FAST, on_event=events.append) as out,
    ):
        await collect(out)
    retrying = [e for e in events if e.kind == "retrying"]
    assert [e.detail["attempt"] for e in retrying] == [2, 3]
    assert all(e.detail["reason"] == "transient" for e in retrying)


def _failed(message: str, status: TaskStatus = TaskStatus.FAILED) -> Task:
    return Task(id="t", provider="apimart", status=status, error=TaskError("task_failed", message))


def test_policy_defaults() -> None:
    """By default only transient failures are resubmitted, up to 3 tasks per job."""
    policy = ResubmitPolicy()
    assert policy.should_resubmit(_failed("quota"), "transient", 1)
    assert policy.should_resubmit(_failed("quota"), "transient", 2)
    assert not policy.should_resubmit(_failed("quota"), "transient", 3)
    assert not policy.should_resubmit(_failed("moderation"), "permanent", 1)
    assert not policy.should_resubmit(_failed("???"), "unknown", 1)


def test_policy_delay_is_jittered_exponential_and_capped() -> None:
    """delay(n) lies in [0.5, 1] x min(max_delay, base_delay * 2 ** (n - 1))."""
    policy = ResubmitPolicy(base_delay=10.0, max_delay=30.0)
    for n, ceiling in ((1, 10.0), (2, 20.0), (3, 30.0), (6, 30.0)):
        for _ in range(20):
            assert 0.5 * ceiling <= policy.delay(n) <= ceiling


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"max_attempts": 0}, "max_attempts"), ({"retry_on": {"sometimes"}}, "retry_on")],
)
def test_policy_rejects_bad_settings(changes: dict[str, object], message: str) -> None:
    """Bad policy settings raise ValueError naming them."""
    with pytest.raises(ValueError, match=message):
        ResubmitPolicy(**changes)  # type: ignore[arg-type]
