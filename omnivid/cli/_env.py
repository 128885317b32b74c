"""Where the command line sends its requests: provider endpoints, API keys, the simulator.

For each provider in use, the CLI needs a base URL and a key:

* ``--simulate``: an in-process :class:`omnivid.testing.Simulator` (its URLs and its key);
  no key needed, everything runs over loopback. ``omnivid batch`` keeps its state in
  ``DIR/simulator.sqlite``, so kill and resume work as against the real service.
* otherwise the base URL is ``--base-url PROVIDER=URL`` (or a bare ``--base-url URL`` when one
  provider is in use), else ``OMNIVID_APIMART_BASE_URL`` / ``OMNIVID_EVOLINK_BASE_URL``, else
  the provider's public URL; the key comes only from the environment (``APIMART_API_KEY``,
  ``EVOLINK_API_KEY``), never from the command line, where other users could read it.

Keys are checked before anything runs, so a missing one is a one-line error and costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from attrs import field, frozen

from .._http.endpoint import base_url_env_var, base_url_problem, env_base_url
from ..errors import ConfigurationError
from ..providers import get_provider, list_providers
from ..testing import Simulator
from ._jobs import UsageError

__all__ = [
    "Endpoint",
    "base_url_env_var",
    "parse_base_urls",
    "real_endpoints",
    "simulated_endpoints",
]


@frozen
class Endpoint:
    """How to reach one provider: base URL (None: the public one) and key (never shown)."""

    provider: str
    base_url: str | None
    api_key: str = field(repr=False)


def parse_base_urls(values: Iterable[str], providers: Iterable[str]) -> dict[str, str]:
    """Read ``--base-url`` values: ``PROVIDER=URL``, or a bare ``URL`` for the only provider
    in use. A bare URL with several providers in use is a :class:`UsageError`."""
    in_use = sorted(set(providers))
    known = {p.name for p in list_providers()}
    out: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and name in known:
            out[name] = _checked_url(url, value)
            continue
        if sep and "://" not in name:
            raise UsageError(
                f"--base-url {value!r}: unknown provider {name!r}; known: "
                f"{', '.join(sorted(known))}"
            )
        if len(in_use) != 1:
            raise UsageError(
                f"--base-url {value!r}: this run uses {len(in_use)} providers "
                f"({', '.join(in_use) or 'none'}); write PROVIDER=URL"
            )
        out[in_use[0]] = _checked_url(value, value)
    return out


def _checked_url(url: str, given: str) -> str:
    problem = base_url_problem(url)
    if problem is not None:
        raise UsageError(f"--base-url {given!r}: {problem}")
    return url.rstrip("/")


def real_endpoints(
    providers: Iterable[str],
    base_urls: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    *,
    missing_key_hint: str = "or use --simulate to try omnivid without one",
) -> dict[str, Endpoint]:
    """Endpoints for real (or externally simulated) providers; a missing key raises
    :class:`~omnivid.errors.ConfigurationError` naming the variable and, in parentheses,
    ``missing_key_hint`` (by default ``--simulate``: commands without it give their own)."""
    env = os.environ if environ is None else environ
    out: dict[str, Endpoint] = {}
    for name in sorted(set(providers)):
        provider = get_provider(name)
        key = env.get(provider.env_var, "").strip()
        if not key:
            raise ConfigurationError(
                f"no API key for {name}: set {provider.env_var} ({missing_key_hint})"
            )
        url = base_urls.get(name) or env_base_url(name, env)
        out[name] = Endpoint(provider=name, base_url=url, api_key=key)
    return out


@asynccontextmanager
async def simulated_endpoints(
    providers: Iterable[str],
    *,
    time_scale: float,
    seed: int | None = None,
    state_file: Path | None = None,
) -> AsyncIterator[dict[str, Endpoint]]:
    """Start an in-process simulator for the duration of the block and point at it. With
    ``state_file`` it keeps its tasks, clock and ledgers there, so the same command run again
    (even after ``kill -9``) finds the tasks the last run submitted."""
    async with Simulator(time_scale=time_scale, seed=seed, state_file=state_file) as sim:
        yield {
            name: Endpoint(provider=name, base_url=sim.base_url(name), api_key=sim.api_key)
            for name in sorted(set(providers))
        }
