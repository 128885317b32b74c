"""Objects dropped without being used to the end close their streams: no ResourceWarning
from anyio's memory streams when they are collected."""

from __future__ import annotations

import gc
import warnings

import pytest

import omnivid
from omnivid import VideoRequest

pytestmark = pytest.mark.anyio


def resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The ResourceWarnings among ``caught``."""
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_a_map_never_entered_closes_its_streams_when_dropped() -> None:
    """client.map(...) built and dropped (an error before `async with`, say) warns nothing."""
    client = omnivid.AsyncClient("apimart", api_key="sk-test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = client.map([VideoRequest(model="gemini-omni-flash-preview", prompt="a fox")])
        del run
        gc.collect()
    assert resource_warnings(caught) == []


async def test_an_events_iterator_dropped_early_closes_its_stream() -> None:
    """An events() iterator left before its end, even caught in a reference cycle, warns
    nothing when collected."""
    client = omnivid.AsyncClient("apimart", api_key="sk-test")
    run = client.map([VideoRequest(model="gemini-omni-flash-preview", prompt="a fox")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = run.events()
        holder: list[object] = [events]
        holder.append(holder)  # a cycle: collected by the garbage collector, in any order
        del events, holder
        gc.collect()
    assert resource_warnings(caught) == []
    run.discard()
