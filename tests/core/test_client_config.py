"""AsyncClient set-up: API keys, defaults, session ownership, and use outside ``async with``."""

from __future__ import annotations

import aiohttp
import pytest

import omnivid
from omnivid.errors import ConfigurationError
from omnivid.testing import Simulator


@pytest.mark.parametrize(
    ("provider", "var"), [("apimart", "APIMART_API_KEY"), ("evolink", "EVOLINK_API_KEY")]
)
def test_missing_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, provider: str, var: str
) -> None:
    """Without api_key= or the variable, the error says which variable to set."""
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigurationError, match=var):
        omnivid.AsyncClient(provider)


def test_empty_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable is the same as none."""
    monkeypatch.setenv("APIMART_API_KEY", "")
    with pytest.raises(ConfigurationError, match="APIMART_API_KEY"):
        omnivid.AsyncClient("apimart")


@pytest.mark.anyio
async def test_key_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, sim: Simulator
) -> None:
    """EVOLINK_API_KEY is used when api_key is not given (the simulator accepts only it)."""
    monkeypatch.setenv("EVOLINK_API_KEY", "env-key-1")
    sim.configure(api_keys={"env-key-1"})
    async with omnivid.AsyncClient("evolink", base_url=sim.base_url("evolink")) as client:
        with pytest.raises(omnivid.errors.NotFoundError):
            await client.get("task-nope")


def test_explicit_key_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key= is used even when the variable is set."""
    monkeypatch.setenv("APIMART_API_KEY", "from-env")
    client = omnivid.AsyncClient("apimart", api_key="explicit")
    assert client._api_key == "explicit"


def test_unknown_provider_lists_the_known_ones() -> None:
    """An unknown provider name is a ConfigurationError naming the registered ones."""
    with pytest.raises(ConfigurationError, match="known: apimart, evolink"):
        omnivid.AsyncClient("openai", api_key="k")


def test_provider_name_is_case_insensitive() -> None:
    """ "EvoLink" finds the evolink adapter."""
    assert omnivid.AsyncClient("EvoLink", api_key="k").provider.name == "evolink"


@pytest.mark.parametrize("scale", [0, -1.0])
def test_time_scale_must_be_positive(scale: float) -> None:
    """time_scale <= 0 is refused with a clear message."""
    with pytest.raises(ConfigurationError, match="time_scale"):
        omnivid.AsyncClient("apimart", api_key="k", time_scale=scale)


def test_documented_defaults() -> None:
    """Defaults: production base URL, 10/60/120 s timeouts, 4 retries, 100 connections."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    assert client.base_url == "https://api.apimart.ai"
    assert client.timeouts == omnivid.Timeouts(connect=10.0, read=60.0, total=120.0)
    assert client.retry == omnivid.RetryPolicy()
    assert client.poll == omnivid.PollPolicy()
    assert client.max_connections == 100
    assert omnivid.AsyncClient("evolink", api_key="k").base_url == "https://api.evolink.ai"


def test_base_url_trailing_slash_is_dropped() -> None:
    """A base URL given with a trailing slash does not produce a double slash."""
    client = omnivid.AsyncClient("apimart", api_key="k", base_url="http://h:1/apimart/")
    assert client.base_url == "http://h:1/apimart"


def test_using_the_client_outside_async_with_is_explained() -> None:
    """transport outside ``async with`` raises ConfigurationError saying how to open it."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    with pytest.raises(ConfigurationError, match="async with"):
        _ = client.transport
    assert client.statistics() == {}


@pytest.mark.anyio
async def test_owned_session_is_closed_on_exit() -> None:
    """The session the client opened is closed when the block ends."""
    async with omnivid.AsyncClient("apimart", api_key="k") as client:
        session = client.session
        assert not session.closed
        assert isinstance(session.connector, aiohttp.TCPConnector)
        assert session.connector.limit == 100
    assert session.closed


@pytest.mark.anyio
async def test_borrowed_session_is_left_open() -> None:
    """A session passed in is used and not closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with omnivid.AsyncClient("apimart", api_key="k", session=session) as client:
            assert client.session is session
        assert not session.closed


@pytest.mark.anyio
async def test_max_connections_limits_the_pool() -> None:
    """max_connections sets the connection pool size of the owned session."""
    async with omnivid.AsyncClient("apimart", api_key="k", max_connections=7) as client:
        assert isinstance(client.session.connector, aiohttp.TCPConnector)
        assert client.session.connector.limit == 7


def test_client_repr_is_short() -> None:
    """repr shows provider and base URL only."""
    client = omnivid.AsyncClient("apimart", api_key="k", base_url="http://h:1")
    assert repr(client) == "<AsyncClient provider='apimart' base_url='http://h:1'>"


def test_slow_start_is_on_unless_turned_off() -> None:
    """Without a rate the gate starts slowly; slow_start=False sends at once."""
    slow = omnivid.AsyncClient("apimart", api_key="k")
    fast = omnivid.AsyncClient("apimart", api_key="k", slow_start=False)
    assert slow.gate.ramping and slow.gate.rate is not None
    assert not fast.gate.ramping and fast.gate.rate is None
