"""cattrs plumbing shared by provider adapters: request renames and tolerant response reading."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from .._models import TaskStatus, VideoRequest

__all__ = ["decode_json", "from_unix", "make_converter", "map_status", "read"]

T = TypeVar("T")

_STATUS_ALIASES = {
    "submitted": TaskStatus.PENDING,
    "queued": TaskStatus.PENDING,
    "pending": TaskStatus.PENDING,
    "processing": TaskStatus.PROCESSING,
    "running": TaskStatus.PROCESSING,
    "in_progress": TaskStatus.PROCESSING,
    "completed": TaskStatus.COMPLETED,
    "succeeded": TaskStatus.COMPLETED,
    "success": TaskStatus.COMPLETED,
    "failed": TaskStatus.FAILED,
    "failure": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
    "canceled": TaskStatus.CANCELLED,
}


def make_converter(renames: Mapping[str, str]) -> cattrs.Converter:
    """A converter that unstructures a ``VideoRequest`` to a wire body.

    ``renames`` maps domain field names to the provider's (``images`` -> ``image_urls``); unset
    fields are omitted and ``extra`` is merged by the adapter, not here. Structuring is tolerant
    of unknown keys, as providers add fields without notice.
    """
    # without detailed validation the generated structure functions are much faster; a body
    # that does not fit still raises (a plain KeyError/TypeError/ValueError), see ``read``
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=False)
    overrides: dict[str, Any] = {name: override(rename=wire) for name, wire in renames.items()}
    overrides["extra"] = override(omit=True)
    hook = make_dict_unstructure_fn(
        VideoRequest,
        conv,
        _cattrs_omit_if_default=True,
        **overrides,
    )
    # optional scalars directly (the same result as cattrs' generic optional path, faster)
    conv.register_structure_hook(float | None, _optional_float)
    conv.register_structure_hook(str | None, _optional_str)
    conv.register_unstructure_hook(VideoRequest, hook)
    conv.register_unstructure_hook(tuple, list)
    return conv


def _optional_float(value: Any, _: Any) -> float | None:
    return None if value is None else float(value)


def _optional_str(value: Any, _: Any) -> str | None:
    return None if value is None else str(value)


def map_status(value: str) -> TaskStatus:
    """A provider's status word as a ``TaskStatus``; an unknown word counts as processing."""
    return _STATUS_ALIASES.get(str(value).lower(), TaskStatus.PROCESSING)


def from_unix(value: float | None) -> datetime | None:
    """A unix timestamp as an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def decode_json(text: str) -> Any:
    """``json.loads`` returning None instead of raising on a non-JSON body."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def read(conv: cattrs.Converter, data: Any, cls: type[T]) -> T | None:
    """Structure ``data`` as ``cls``; None when it does not fit (the caller raises)."""
    try:
        return conv.structure(data, cls)
    except (cattrs.BaseValidationError, LookupError, TypeError, ValueError, AttributeError):
        return None
