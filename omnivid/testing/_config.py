"""Simulator configuration: server behaviour (`SimConfig`) and injected faults (`FaultConfig`).

Both are mutable attrs classes whose validators also run on assignment, so a running test can
change them (``sim.faults.error_5xx_rate = 0.2``, ``sim.config.rps = 2``) and the next request
sees the change. Units: task times (durations, estimates, URL lifetime, callback delays) are
*simulated* seconds, multiplied by ``time_scale`` to get real seconds; everything about a single
HTTP exchange (``rps``, ``retry_after_seconds``, ``slow_seconds``) is in *real* seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

APIMART = "apimart"
EVOLINK = "evolink"
PROVIDERS: tuple[str, ...] = (APIMART, EVOLINK)

OMNI_FLASH_EXT = "Omni-Flash-Ext"
GEMINI_PREVIEW = "gemini-omni-flash-preview"
EVOLINK_MODEL = "gemini-omni-flash-reference-to-video"
MODELS: dict[str, tuple[str, ...]] = {
    APIMART: (GEMINI_PREVIEW, OMNI_FLASH_EXT),
    EVOLINK: (EVOLINK_MODEL,),
}

RetryAfterMode = Literal["seconds", "http-date"]
UrlForm = Literal["list", "string"]
Language = Literal["zh", "en", "ko", "ja"]
LANGUAGES: tuple[Language, ...] = ("zh", "en", "ko", "ja")

DEFAULT_API_KEY = "sk-omnivid-sim"


def _durations(value: Mapping[str, float | tuple[float, float]]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for model, span in value.items():
        low, high = (span, span) if isinstance(span, int | float) else span
        if not 0 <= low <= high:
            raise ValueError(f"duration range for {model!r} must satisfy 0 <= low <= high")
        out[model] = (float(low), float(high))
    return out


def _key_set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    keys = frozenset({value} if isinstance(value, str) else value)
    if not keys or "" in keys:
        raise ValueError("api_keys must be non-empty strings")
    return keys


def _denied(value: Mapping[str, str | Iterable[str]]) -> dict[str, frozenset[str]]:
    return {
        key: frozenset({models} if isinstance(models, str) else models)
        for key, models in value.items()
    }


_rate = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))
_optional_positive = attrs.validators.optional(attrs.validators.gt(0))


@attrs.define
class FaultConfig:
    """Probabilities of injected faults (0 = never, 1 = always); changeable at run time.

    ``error_5xx_rate``, ``reset_rate``, ``rate_limit_rate``, ``slow_rate`` and ``malformed_rate``
    apply to every API request (submit and poll); ``lost_response_rate`` to submits;
    ``truncate_download_rate`` to result downloads. The ``fail_*_rate`` and ``cancel_rate``
    decide at submit time how a task will end (see the markers in ``omnivid.testing``).
    ``error_5xx_statuses`` are drawn from uniformly (500 has the provider's JSON body, the
    others an nginx HTML page); ``slow_seconds`` is the real delay of a slow response.
    """

    error_5xx_rate: float = attrs.field(default=0.0, validator=_rate)
    error_5xx_statuses: tuple[int, ...] = attrs.field(default=(500, 502, 503), converter=tuple)
    lost_response_rate: float = attrs.field(default=0.0, validator=_rate)
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_seconds: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    malformed_rate: float = attrs.field(default=0.0, validator=_rate)
    truncate_download_rate: float = attrs.field(default=0.0, validator=_rate)
    fail_quota_rate: float = attrs.field(default=0.0, validator=_rate)
    fail_moderation_rate: float = attrs.field(default=0.0, validator=_rate)
    fail_timeout_rate: float = attrs.field(default=0.0, validator=_rate)
    cancel_rate: float = attrs.field(default=0.0, validator=_rate)


DEFAULT_DURATIONS: dict[str, tuple[float, float]] = {
    OMNI_FLASH_EXT: (180.0, 300.0),  # "typically 3-5 minutes"
    GEMINI_PREVIEW: (30.0, 50.0),  # the example took 40 s
    EVOLINK_MODEL: (45.0, 75.0),  # estimated_time 60 in the example
}


def _default_durations() -> dict[str, tuple[float, float]]:
    return dict(DEFAULT_DURATIONS)


def _default_estimates() -> dict[str, float]:
    return {OMNI_FLASH_EXT: 600.0, GEMINI_PREVIEW: 60.0, EVOLINK_MODEL: 60.0}


def _default_costs() -> dict[str, tuple[float, int]]:
    return {OMNI_FLASH_EXT: (0.4, 4), GEMINI_PREVIEW: (1.0, 10)}


@attrs.define
class SimConfig:
    """Everything about how the simulator behaves, except faults (see `FaultConfig`).

    Attributes:
        host, port: where to listen (port 0 picks a free port).
        api_keys: accepted keys; ``None`` accepts any non-empty key.
        seed: seed of the simulator's ``random.Random`` (ids, durations, fault draws).
        time_scale: real seconds per simulated second (0.001: a 240 s task takes 0.24 s);
            fixed once the simulator exists.
        durations: per model, ``(low, high)`` simulated seconds drawn uniformly, or one number;
            models left out keep their defaults.
        instant: every task completes at once (first poll sees it done), for throughput tests.
        estimated_times: per model, the fixed ``estimated_time`` reported (the documents' figures).
        estimate_error: if set, ``estimated_time`` = true duration x U(1 - e, 1 + e) instead.
        url_ttl: simulated seconds a result URL lives (``expires_at`` = completion + url_ttl).
        url_form: APIMart ``result.videos[].url`` as a one-element ``list`` or a plain ``string``.
        apimart_costs: per APIMart model, ``(cost, credits_cost)`` charged on completion.
        evolink_credits_per_second: EvoLink credits per video second (10 s -> 102.34 credits).
        evolink_credit_price: currency per EvoLink credit (for budgets and ``total_cost``).
        budgets: per key, a balance in currency units; a submit that would exceed it gets 402.
        denied_models: per key, models it may not use (EvoLink 403 ``model_access_denied``).
        rps: per key, allowed API requests per real second (token bucket), ``None`` = no limit.
        burst: bucket size for ``rps`` (default ``max(1, rps)``).
        max_concurrent_tasks: per key, non-terminal tasks allowed; a submit beyond gets 429.
        retry_after: ``"seconds"``, ``"http-date"`` or ``None`` (no ``Retry-After`` header).
        retry_after_seconds: the real-second wait announced on a 429 (fractions allowed).
        allow_loopback_callbacks: accept ``http://127.0.0.1``/``localhost`` callback URLs.
        callback_timeout: simulated seconds per callback attempt (real floor 0.5 s).
        callback_retry_delays: simulated seconds before each callback retry.
        language: language of APIMart error messages (``zh`` as in the documents, ``en``,
            ``ko``, ``ja``); a task-status request's ``language`` query overrides it.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    api_keys: frozenset[str] | None = attrs.field(default=None, converter=_key_set)
    seed: int | None = None
    time_scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    durations: dict[str, tuple[float, float]] = attrs.field(
        factory=_default_durations, converter=_durations
    )
    instant: bool = False
    estimated_times: dict[str, float] = attrs.field(factory=_default_estimates)
    estimate_error: float | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.lt(1.0))
        ),
    )
    url_ttl: float = attrs.field(default=86400.0, validator=attrs.validators.ge(0.0))
    url_form: UrlForm = attrs.field(
        default="list", validator=attrs.validators.in_(("list", "string"))
    )
    apimart_costs: dict[str, tuple[float, int]] = attrs.field(factory=_default_costs)
    evolink_credits_per_second: float = 10.234
    evolink_credit_price: float = 0.01
    budgets: dict[str, float] = attrs.field(factory=dict)
    denied_models: dict[str, frozenset[str]] = attrs.field(factory=dict, converter=_denied)
    rps: float | None = attrs.field(default=None, validator=_optional_positive)
    burst: float | None = attrs.field(default=None, validator=_optional_positive)
    max_concurrent_tasks: int | None = attrs.field(default=None, validator=_optional_positive)
    retry_after: RetryAfterMode | None = attrs.field(
        default="seconds", validator=attrs.validators.in_(("seconds", "http-date", None))
    )
    retry_after_seconds: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    allow_loopback_callbacks: bool = False
    callback_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))
    callback_retry_delays: tuple[float, ...] = attrs.field(default=(1.0, 2.0, 4.0), converter=tuple)
    language: Language = attrs.field(default="zh", validator=attrs.validators.in_(LANGUAGES))

    @property
    def default_api_key(self) -> str:
        """A key the simulator accepts: the first configured key, or a fixed one."""
        return min(self.api_keys) if self.api_keys else DEFAULT_API_KEY
