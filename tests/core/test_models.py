"""VideoRequest, Task and TaskStatus: conversion, plain forms, fingerprints, immutability."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest

from omnivid import Task, TaskError, TaskStatus, Video, VideoRequest
from omnivid._models import converter
from omnivid.errors import ValidationError


def test_request_normalises_media_and_duration() -> None:
    """A single URL becomes a one-item tuple and a numeric string duration an int."""
    request = VideoRequest(model="m", images="https://x/a.png", videos=["v.mp4"], duration="6")
    assert (request.images, request.videos, request.duration) == (
        ("https://x/a.png",),
        ("v.mp4",),
        6,
    )


def test_request_keeps_auto_duration() -> None:
    """duration="auto" stays the string auto."""
    assert VideoRequest(model="m", duration="auto").duration == "auto"


def test_request_is_frozen_and_hashable() -> None:
    """A VideoRequest cannot be changed after creation and can be a dict key."""
    request = VideoRequest(model="m", prompt="p", extra={"seed": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.prompt = "q"  # type: ignore[misc]
    assert {request: 1}[request] == 1


def test_to_dict_omits_unset_fields() -> None:
    """The plain form has only the fields that were given."""
    request = VideoRequest(model="m", prompt="p", images=["a", "b"], extra={"seed": 3})
    assert request.to_dict() == {
        "model": "m",
        "prompt": "p",
        "images": ["a", "b"],
        "extra": {"seed": 3},
    }


def test_from_dict_round_trip() -> None:
    """from_dict(to_dict()) gives back an equal request."""
    request = VideoRequest(
        model="Omni-Flash-Ext",
        prompt="p",
        images=["https://x/a.png"],
        duration=6,
        aspect_ratio="9:16",
        resolution="1080p",
        generation_type="frame",
        extend_from="task_1",
        callback_url="https://hooks.example.com/x",
        extra={"size": "9:16"},
    )
    assert VideoRequest.from_dict(request.to_dict()) == request


def test_from_dict_unknown_field_is_named() -> None:
    """An unknown key is a ValidationError naming it and listing the known ones."""
    with pytest.raises(ValidationError) as caught:
        VideoRequest.from_dict({"model": "m", "promt": "typo"})
    assert caught.value.field == "promt"
    assert "known: " in str(caught.value) and "prompt" in str(caught.value)


def test_from_dict_requires_model() -> None:
    """A plain request without a model is refused."""
    with pytest.raises(ValidationError, match="model=None: required"):
        VideoRequest.from_dict({"prompt": "p"})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"model": "m", "images": 5}, "images"),
        ({"model": "m", "videos": {"a": 1}}, "videos"),
        ({"model": "m", "extra": ["x"]}, "extra"),
    ],
)
def test_from_dict_wrong_container_type_is_a_validation_error(
    data: dict[str, object], field: str
) -> None:
    """A plain request with a non-list images/videos or non-object extra is named, not a crash."""
    with pytest.raises(ValidationError) as caught:
        VideoRequest.from_dict(data)
    assert caught.value.field == field


def test_fingerprint_is_stable_and_ignores_callback_url() -> None:
    """Equal requests share a fingerprint; the callback URL does not change it."""
    a = VideoRequest(model="m", prompt="p", extra={"b": 1, "a": 2})
    b = VideoRequest(model="m", prompt="p", extra={"a": 2, "b": 1}, callback_url="https://h/x")
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64


def test_fingerprint_differs_for_different_requests() -> None:
    """A different prompt gives a different fingerprint."""
    assert VideoRequest(model="m", prompt="p").fingerprint() != (
        VideoRequest(model="m", prompt="q").fingerprint()
    )


def test_task_status_terminal_states() -> None:
    """completed, failed and cancelled are terminal; pending and processing are not."""
    assert {s for s in TaskStatus if s.is_terminal} == {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
    }
    assert TaskStatus("processing") is TaskStatus.PROCESSING


def test_task_round_trips_through_converter() -> None:
    """converter.unstructure gives JSON-ready data that structures back to an equal Task."""
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    task = Task(
        id="t",
        provider="evolink",
        model="m",
        status=TaskStatus.FAILED,
        progress=40,
        created_at=when,
        completed_at=when,
        estimated_seconds=60.0,
        cost=0.0,
        credits=1.5,
        videos=(Video("https://cdn/x.mp4", when),),
        error=TaskError("content_moderation", "no"),
        raw={"id": "t"},
    )
    data = converter.unstructure(task)
    assert data["status"] == "failed"
    assert data["created_at"] == when.timestamp()
    assert converter.structure(data, Task) == task


def test_task_repr_hides_raw() -> None:
    """The provider's raw JSON is not part of the task's repr."""
    task = Task(id="t", provider="apimart", raw={"secret_field": "zzz"})
    assert "secret_field" not in repr(task)


def test_task_video_urls_in_order() -> None:
    """video_urls lists the result URLs in order."""
    task = Task(id="t", provider="p", videos=(Video("u1"), Video("u2")))
    assert task.video_urls == ["u1", "u2"]


def test_extra_is_copied_and_none_means_empty() -> None:
    """extra is copied on creation (later changes to the caller's dict do not leak in)."""
    given = {"seed": 1}
    request = VideoRequest(model="m", extra=given)
    given["seed"] = 2
    assert request.extra == {"seed": 1}
    assert VideoRequest(model="m", extra=None).extra == {}
