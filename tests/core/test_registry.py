"""The provider registry: a new provider is one small adapter; failures are classified."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from wirehelp import Reply, Scripted

import omnivid
from omnivid import TaskStatus
from omnivid.providers import CheckOptions, ModelSpec, Provider, get_provider
from omnivid.providers import _base as registry
from omnivid.providers._base import DEFAULT_CHECKS
from omnivid.testing import FAILURES


def _check(request: omnivid.VideoRequest, options: CheckOptions) -> None:
    if not request.prompt:
        raise omnivid.errors.ValidationError("prompt", request.prompt, "toy-1 needs a prompt")


class Toy(Provider):
    """A minimal provider: flat JSON both ways."""

    name = "toy"
    base_url = "https://toy.invalid"
    env_var = "TOY_API_KEY"
    models: ClassVar[Mapping[str, ModelSpec]] = {
        "toy-1": ModelSpec("toy-1", "toy", "a toy", ("text-to-video",), ("prompt",), _check)
    }

    def build_submit_body(
        self, request: omnivid.VideoRequest, options: CheckOptions = DEFAULT_CHECKS
    ) -> dict[str, Any]:
        self.validate(request, options)
        return {"model": request.model, "prompt": request.prompt}

    def parse_submit(self, data: Any, request: omnivid.VideoRequest) -> omnivid.Task:
        return omnivid.Task(id=data["id"], provider=self.name, model=request.model)

    def parse_task(self, data: Any, *, model: str | None = None) -> omnivid.Task:
        status = TaskStatus(data["status"])
        return omnivid.Task(id=data["id"], provider=self.name, model=model, status=status)


@pytest.mark.anyio
async def test_a_registered_adapter_works_with_the_client(
    monkeypatch: pytest.MonkeyPatch, scripted: Scripted
) -> None:
    """Registering one Provider subclass is enough for AsyncClient to submit and poll it."""
    monkeypatch.setitem(registry._REGISTRY, "toy", Toy())
    monkeypatch.setenv("TOY_API_KEY", "k")
    assert "toy" in [p.name for p in omnivid.providers.list_providers()]
    scripted.queue(Reply(200, {"id": "t1"}), Reply(200, {"id": "t1", "status": "completed"}))
    async with omnivid.AsyncClient("toy", base_url=scripted.url, time_scale=0.001) as client:
        with pytest.raises(omnivid.errors.ValidationError):
            await client.submit(omnivid.VideoRequest(model="toy-1"))
        done = await client.generate(omnivid.VideoRequest(model="toy-1", prompt="p"))
    assert (done.id, done.status, done.provider) == ("t1", TaskStatus.COMPLETED, "toy")


def _failed(provider: str, code: str, message: str) -> omnivid.Task:
    return omnivid.Task(
        id="t",
        provider=provider,
        status=TaskStatus.FAILED,
        error=omnivid.TaskError(code, message),
    )


@pytest.mark.parametrize(
    ("cause", "kind"),
    [("quota", "transient"), ("timeout", "transient"), ("moderation", "permanent")],
)
def test_classify_documented_failure_causes(cause: str, kind: str) -> None:
    """The documented causes (quota, upstream timeout, moderation) classify for both providers."""
    apimart_message, evolink_code, evolink_message = FAILURES[cause]
    assert (
        get_provider("apimart").classify_failure(_failed("apimart", "task_failed", apimart_message))
        == kind
    )
    assert (
        get_provider("evolink").classify_failure(_failed("evolink", evolink_code, evolink_message))
        == kind
    )


def test_classify_cancelled_is_permanent() -> None:
    """A cancelled task is never worth resubmitting automatically."""
    task = omnivid.Task(id="t", provider="apimart", status=TaskStatus.CANCELLED)
    assert get_provider("apimart").classify_failure(task) == "permanent"


def test_classify_unknown_reason() -> None:
    """A failure with an unrecognised reason is "unknown"."""
    task = _failed("apimart", "task_failed", "something odd happened")
    assert get_provider("apimart").classify_failure(task) == "unknown"


def test_classify_invalid_parameters_is_permanent() -> None:
    """The documented failed example (invalid duration) is permanent."""
    task = _failed("apimart", "task_failed", "invalid duration 7, must be one of 4/6/8/10")
    assert get_provider("apimart").classify_failure(task) == "permanent"
