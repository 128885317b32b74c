"""A failed task's cause in one word, whatever the provider or the language of its message.

APIMart reports every failure as ``task_failed`` and words the cause in zh, ja or en; the
seed names three causes (上游配额暂时耗尽, 上游超时, 内容审核未通过). ``TaskFailedError.kind``
and ``Outcome.kind`` carry the classification, and the default resubmission policy follows it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import omnivid
from omnivid import Task, TaskError, TaskStatus
from omnivid.batch._policy import DEFAULT_RESUBMIT
from omnivid.errors import TaskFailedError
from omnivid.providers import get_provider
from omnivid.testing import FAILURES, Simulator

CAUSES = [
    # message (as APIMart would send it), cause
    ("上游配额暂时耗尽", "quota"),  # the seed's own words (003, Omni-Flash-Ext)
    ("上游超时", "timeout"),
    ("内容审核未通过", "moderation"),
    ("上游配額暫時耗盡", "quota"),  # traditional Chinese
    ("上游逾時：上游超時", "timeout"),
    ("內容審核未通過", "moderation"),
    ("上流のクォータが一時的に枯渇しました", "quota"),
    ("上流タイムアウト", "timeout"),
    ("コンテンツ審査に通過しませんでした", "moderation"),
    (FAILURES["quota"][0], "quota"),
    (FAILURES["timeout"][0], "timeout"),
    (FAILURES["moderation"][0], "moderation"),
    ("invalid duration 7, must be one of 4/6/8/10", "invalid"),  # the seed's failed example
    ("参数无效", "invalid"),
    ("something odd happened", "unknown"),
]


def failed(message: str, code: str = "task_failed", provider: str = "apimart") -> Task:
    return Task(
        id="task_1", provider=provider, status=TaskStatus.FAILED, error=TaskError(code, message)
    )


@pytest.mark.parametrize(("message", "cause"), CAUSES)
def test_apimart_message_in_any_language_gives_the_cause(message: str, cause: str) -> None:
    """The same cause in zh, ja or en: one kind on the task, its error and TaskFailedError."""
    task = failed(message)
    assert task.failure_kind == cause
    assert TaskFailedError(task).kind == cause


@pytest.mark.parametrize(
    ("message", "kind"),
    [("上游配额暂时耗尽", "transient"), ("上游超时", "transient"), ("内容审核未通过", "permanent")],
)
def test_the_seeds_chinese_causes_resubmit_like_the_english_ones(message: str, kind: str) -> None:
    """The Chinese quota message is transient (it used to be "unknown", so the default policy
    never resubmitted it); moderation is permanent."""
    task = failed(message)
    assert get_provider("apimart").classify_failure(task) == kind
    assert DEFAULT_RESUBMIT.should_resubmit(task, kind, attempts=1) is (kind == "transient")


@pytest.mark.parametrize("cause", ["quota", "timeout", "moderation"])
def test_evolink_codes_classify(cause: str) -> None:
    """EvoLink's string codes name the same causes."""
    _, code, message = FAILURES[cause]
    assert failed(message, code, "evolink").failure_kind == cause


def test_cancelled_and_unfinished_tasks() -> None:
    """A cancelled task's kind is "cancelled"; a task that did not fail has none."""
    cancelled = Task(id="t", provider="apimart", status=TaskStatus.CANCELLED)
    assert cancelled.failure_kind == "cancelled" and TaskFailedError(cancelled).kind == "cancelled"
    assert Task(id="t", provider="apimart", status=TaskStatus.COMPLETED).failure_kind is None
    assert Task(id="t", provider="apimart", status=TaskStatus.FAILED).failure_kind == "unknown"


@pytest.mark.anyio
async def test_generate_raises_task_failed_error_with_its_kind(
    sim: Simulator, make_client: Callable[..., omnivid.AsyncClient]
) -> None:
    """A task failed by moderation at the simulator: TaskFailedError.kind == "moderation"."""
    async with make_client("apimart") as client:
        with pytest.raises(TaskFailedError) as caught:
            await client.generate(
                omnivid.VideoRequest(model="Omni-Flash-Ext", prompt="a [[fail:moderation]]")
            )
    assert caught.value.kind == "moderation"


@pytest.mark.anyio
async def test_outcome_kind(
    sim: Simulator, make_client: Callable[..., omnivid.AsyncClient]
) -> None:
    """Each outcome says why its task failed; a completed one has no kind."""
    prompts = {"ok": "fine", "quota": "q [[fail:quota]]", "timeout": "t [[fail:timeout]]"}
    jobs = [
        (key, omnivid.VideoRequest(model="Omni-Flash-Ext", prompt=prompt))
        for key, prompt in prompts.items()
    ]
    async with make_client("apimart") as client, client.map(jobs, resubmit=None) as outcomes:
        kinds = {outcome.key: outcome.kind async for outcome in outcomes}
    assert kinds == {"ok": None, "quota": "quota", "timeout": "timeout"}


@pytest.mark.anyio
@pytest.mark.parametrize("language", ["zh", "ja", "ko", "en"])
@pytest.mark.parametrize("cause", ["quota", "timeout", "moderation"])
async def test_the_simulators_localized_failures_classify(
    sim: Simulator, make_client: Callable[..., omnivid.AsyncClient], language: str, cause: str
) -> None:
    """A failure read back in zh, ja, ko or en (APIMart's language query) has the same kind,
    and only quota and timeout are worth resubmitting."""
    request = omnivid.VideoRequest(model="Omni-Flash-Ext", prompt=f"x [[fail:{cause}]]")
    async with make_client("apimart") as client:
        done = await client.wait(await client.submit(request), language=language)
    assert done.error is not None and done.error.code == "task_failed"
    assert (done.error.message == FAILURES[cause][0]) is (language == "en")  # localized
    assert done.failure_kind == cause
    expected = "permanent" if cause == "moderation" else "transient"
    assert client.provider.classify_failure(done) == expected
