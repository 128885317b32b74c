"""What the commands share: exit statuses, the one-line error, the time scale, the client,
and how a failed task's reason is worded."""

from __future__ import annotations

import argparse
import sys

from .._client import AsyncClient
from ._env import Endpoint

__all__ = [
    "DEFAULT_SIM_TIME_SCALE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "client_for",
    "error",
    "time_scale",
]

DEFAULT_SIM_TIME_SCALE = 0.01
"""Real seconds per simulated second with ``--simulate`` (a 240 s task takes 2.4 s)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def error(message: str) -> None:
    """Print ``omnivid: error: MESSAGE`` on stderr."""
    print(f"omnivid: error: {message}", file=sys.stderr, flush=True)


def time_scale(args: argparse.Namespace) -> float:
    """``--time-scale``, else :data:`DEFAULT_SIM_TIME_SCALE` with ``--simulate``, else 1."""
    if args.time_scale is not None:
        return float(args.time_scale)
    return DEFAULT_SIM_TIME_SCALE if getattr(args, "simulate", False) else 1.0


def client_for(endpoint: Endpoint, time_scale: float) -> AsyncClient:
    """An (unopened) client on ``endpoint``."""
    return AsyncClient(
        endpoint.provider,
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        time_scale=time_scale,
    )
