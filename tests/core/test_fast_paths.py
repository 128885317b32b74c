"""The hot-path shortcuts give the same results as the general paths they skip.

* provider converters run without cattrs' detailed validation: every seed response reads the
  same as through a detailed-validation converter, and a body that does not fit is still
  refused (``read`` returns None, the adapter raises a malformed-response ``APIError``);
* the gate's rate estimate counts a long cooldown only up to ``burst`` seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cattrs
import pytest

import omnivid
from omnivid import errors
from omnivid._aio import clock as _clock
from omnivid._http.gate import AccountGate
from omnivid.providers import apimart, evolink
from omnivid.providers._wire import read

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"


def _seed(name: str) -> Any:
    return json.loads((SEEDS / name).read_text())


def _detailed(conv: cattrs.Converter) -> cattrs.Converter:
    """A copy of ``conv`` with cattrs' detailed validation back on (the general path)."""
    slow = conv.copy(detailed_validation=True)
    if conv is apimart._conv:  # (a copy does not carry union hooks)
        slow.register_structure_hook(list[str] | str, apimart._url_or_urls)
    assert slow.detailed_validation and not conv.detailed_validation
    return slow


@pytest.mark.parametrize(
    ("module", "seed", "cls"),
    [
        (apimart, "apimart_ext_task_completed.json", apimart._TaskEnvelope),
        (apimart, "apimart_ext_task_failed.json", apimart._TaskEnvelope),
        (apimart, "apimart_gemini_task_completed.json", apimart._TaskEnvelope),
        (apimart, "apimart_submit_200.json", apimart._Submit),
        (evolink, "evolink_task_completed.json", evolink._Task),
        (evolink, "evolink_task_failed.json", evolink._Task),
        (evolink, "evolink_submit_200.json", evolink._Task),
    ],
)
def test_seed_responses_read_the_same_without_detailed_validation(
    module: Any, seed: str, cls: type
) -> None:
    data = _seed(seed)
    fast = read(module._conv, data, cls)
    assert fast is not None
    assert fast == read(_detailed(module._conv), data, cls)


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200},  # no data
        {"code": 200, "data": {"status": "completed"}},  # no id
        {"code": 200, "data": {"id": "t1", "status": "completed", "progress": "lots"}},
        {"code": 200, "data": "oops"},
        {"code": 200, "data": {"id": "t1", "status": "done", "result": {"videos": 3}}},
        [],
        "text",
    ],
)
def test_unfit_apimart_task_bodies_are_still_refused(body: Any) -> None:
    conv = apimart._conv
    assert read(conv, body, apimart._TaskEnvelope) is None
    assert read(_detailed(conv), body, apimart._TaskEnvelope) is None
    with pytest.raises(errors.APIError, match="malformed task response"):
        apimart.APIMart().parse_task(body)


@pytest.mark.parametrize(
    "body", [{"status": "pending"}, {"id": "t1"}, {"id": "t1", "status": "x", "results": 5}, 7]
)
def test_unfit_evolink_bodies_are_still_refused(body: Any) -> None:
    assert read(evolink._conv, body, evolink._Task) is None
    with pytest.raises(errors.APIError, match="malformed task response"):
        evolink.EvoLink().parse_task(body)


def test_apimart_submit_missing_task_id_is_refused() -> None:
    request = omnivid.VideoRequest(model="gemini-omni-flash-preview", prompt="p")
    with pytest.raises(errors.APIError, match="malformed submit response"):
        apimart.APIMart().parse_submit({"code": 200, "data": [{"status": "submitted"}]}, request)


def test_body_without_media_changes_is_the_same_as_before() -> None:
    """``build_submit_body`` skips rebuilding the request when its media pass unchanged."""
    request = omnivid.VideoRequest(
        model="Omni-Flash-Ext",
        prompt="p",
        images=["https://x.example/a.png"],
        resolution="1080P",
    )
    body = apimart.APIMart().build_submit_body(request)
    assert body == {
        "model": "Omni-Flash-Ext",
        "prompt": "p",
        "image_urls": ["https://x.example/a.png"],
        "resolution": "1080p",
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("pause", "expected"), [(0.5, 100.0), (1.0, 100.0), (3.0, 100.0)])
def test_estimate_counts_a_long_cooldown_only_up_to_the_burst(
    monkeypatch: pytest.MonkeyPatch, pause: float, expected: float
) -> None:
    """At R = 100/s with a bucket of 1 s: after a pause p, the server lets through
    min(p, 1) x 100 (the refilled bucket) + 100 per second of sending; the estimate is R
    whatever the pause (counting the whole pause read 3 s + 0.5 s as 150 / 3.5 = 43/s)."""
    clock = _Clock()
    monkeypatch.setattr(_clock, "now", clock)
    gate = AccountGate(rate=500.0, settle=1.0)
    gate.on_rate_limited(pause)  # the first storm: the gate closes for `pause`
    clock.now += pause
    accepted = min(pause, 1.0) * 100 + 50  # the refilled bucket, then 0.5 s at 100/s
    for _ in range(int(accepted)):
        clock.now += 0.5 / accepted
        gate.on_success()
    gate.on_rate_limited(pause)
    assert gate.limit_estimate == pytest.approx(expected, rel=0.02)


def test_time_closed_is_counted_once_when_429s_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping cooldowns (several 429s of one storm) count as the union of their spans."""
    clock = _Clock()
    monkeypatch.setattr(_clock, "now", clock)
    gate = AccountGate(rate=500.0, settle=1.0, burst=0.0)
    gate.on_rate_limited(2.0)
    clock.now += 0.5
    gate.on_rate_limited(2.0)  # the same storm: closed until 1002.5 (2.5 s in all)
    clock.now = 1002.5
    for _ in range(100):  # then 100 accepted in 1 s
        clock.now += 0.01
        gate.on_success()
    gate.on_rate_limited(2.0)
    assert gate.limit_estimate == pytest.approx(100.0, rel=0.02)
