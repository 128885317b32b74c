"""Provider adapters and their registry.

Each provider is one module: a :class:`Provider` subclass declaring its base URL, API-key
variable and models (:class:`ModelSpec`), building submit bodies and parsing responses, then
calling :func:`register`. ``list_providers()`` and ``all_models()`` describe what is available.
"""

from . import apimart as apimart
from . import evolink as evolink
from ._base import (
    CheckOptions,
    FailureKind,
    ModelSpec,
    Provider,
    all_models,
    get_provider,
    list_providers,
    provider_for_model,
    register,
)

__all__ = [
    "CheckOptions",
    "FailureKind",
    "ModelSpec",
    "Provider",
    "all_models",
    "get_provider",
    "list_providers",
    "provider_for_model",
    "register",
]
