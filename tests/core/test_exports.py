"""The public namespaces: ``__all__`` sorted, every name importable, nothing public left out."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import omnivid
from omnivid import errors, providers

CORE = [
    "AsyncClient",
    "PollPolicy",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskStatus",
    "Timeouts",
    "Video",
    "VideoRequest",
    "__version__",
    "errors",
    "providers",
]


@pytest.mark.parametrize("module", [omnivid, errors, providers], ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(module: types.ModuleType) -> None:
    """__all__ lists each name once, in sorted order."""
    assert module.__all__ == sorted(set(module.__all__))


@pytest.mark.parametrize("module", [omnivid, errors, providers], ids=lambda m: m.__name__)
def test_every_exported_name_imports(module: types.ModuleType) -> None:
    """``from module import name`` works for every name in __all__."""
    fresh = importlib.import_module(module.__name__)
    for name in module.__all__:
        assert getattr(fresh, name) is not None, name


@pytest.mark.parametrize("module", [omnivid, errors, providers], ids=lambda m: m.__name__)
def test_nothing_public_is_missing_from_all(module: types.ModuleType) -> None:
    """Every public class or function the module defines (or re-exports) is in __all__."""
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("omnivid")
    }
    assert public <= set(module.__all__)


def test_core_names_are_exported() -> None:
    """The names the issue promises are in omnivid.__all__."""
    assert set(CORE) <= set(omnivid.__all__)
    assert omnivid.__version__ == "0.1.0"


def test_every_error_class_is_exported() -> None:
    """Each exception class defined in omnivid.errors is listed in its __all__."""
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "omnivid.errors"
        and not name.startswith("_")
    }
    assert defined == set(errors.__all__)


def test_providers_describe_themselves() -> None:
    """list_providers()/all_models() list both providers and their three models with rules."""
    assert [p.name for p in providers.list_providers()] == ["apimart", "evolink"]
    specs = {s.name: s for s in providers.all_models()}
    assert set(specs) == {
        "gemini-omni-flash-preview",
        "Omni-Flash-Ext",
        "gemini-omni-flash-reference-to-video",
    }
    for spec in specs.values():
        assert spec.rules and spec.modes and spec.summary and spec.typical_seconds > 0
    assert providers.provider_for_model("Omni-Flash-Ext").name == "apimart"
    assert providers.provider_for_model("gemini-omni-flash-reference-to-video").env_var == (
        "EVOLINK_API_KEY"
    )


def test_unknown_model_is_a_validation_error() -> None:
    """provider_for_model names the known models when it does not know one."""
    with pytest.raises(errors.ValidationError, match="known: Omni-Flash-Ext"):
        providers.provider_for_model("sora-2")
