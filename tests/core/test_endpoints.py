"""Base URLs: ``base_url=``, else ``OMNIVID_<PROVIDER>_BASE_URL``, else the public URL; one rule
for the client and the command line."""

from __future__ import annotations

import pytest

import omnivid
from omnivid.cli._env import parse_base_urls, real_endpoints
from omnivid.cli._jobs import UsageError
from omnivid.errors import ConfigurationError, NotFoundError
from omnivid.testing import Simulator

MALFORMED = [
    ("ftp://h/apimart", "must be an http(s) URL"),
    ("api.apimart.ai", "must be an http(s) URL"),
    ("http://", "has no host"),
    ("http://h:port/apimart", "is not a valid URL"),
    ("http://h/apimart?x=1", "must not have a query or fragment"),
    ("http://h/api mart", "must not contain spaces"),
]


@pytest.mark.parametrize(
    ("provider", "var"),
    [("apimart", "OMNIVID_APIMART_BASE_URL"), ("evolink", "OMNIVID_EVOLINK_BASE_URL")],
)
def test_the_variable_sets_the_base_url(
    monkeypatch: pytest.MonkeyPatch, provider: str, var: str
) -> None:
    """Without base_url=, the provider's variable is the base URL (trailing slash dropped)."""
    monkeypatch.setenv(var, "http://127.0.0.1:9/sim/")
    assert omnivid.AsyncClient(provider, api_key="k").base_url == "http://127.0.0.1:9/sim"


def test_base_url_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit base_url= is used even when the variable is set (even to nonsense)."""
    monkeypatch.setenv("OMNIVID_APIMART_BASE_URL", "not a url")
    client = omnivid.AsyncClient("apimart", api_key="k", base_url="http://h:1/x")
    assert client.base_url == "http://h:1/x"


def test_an_empty_variable_means_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set to an empty string is the same as unset."""
    monkeypatch.setenv("OMNIVID_EVOLINK_BASE_URL", "  ")
    assert omnivid.AsyncClient("evolink", api_key="k").base_url == "https://api.evolink.ai"


@pytest.mark.parametrize(("url", "rule"), MALFORMED)
def test_a_malformed_variable_names_itself(
    monkeypatch: pytest.MonkeyPatch, url: str, rule: str
) -> None:
    """A malformed variable is a ConfigurationError naming the variable, its value and why."""
    monkeypatch.setenv("OMNIVID_APIMART_BASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        omnivid.AsyncClient("apimart", api_key="k")
    assert caught.value.args[0].startswith(f"OMNIVID_APIMART_BASE_URL={url!r}: {rule}")
    assert caught.value.provider == "apimart"


@pytest.mark.parametrize(("url", "rule"), MALFORMED)
def test_a_malformed_base_url_names_the_argument(url: str, rule: str) -> None:
    """A malformed base_url= is a ConfigurationError naming base_url."""
    with pytest.raises(ConfigurationError) as caught:
        omnivid.AsyncClient("evolink", api_key="k", base_url=url)
    assert caught.value.args[0].startswith(f"base_url={url!r}: {rule}")


def test_credentials_in_a_url_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user:password in a malformed URL stays out of the error."""
    monkeypatch.setenv("OMNIVID_APIMART_BASE_URL", "http://me:s3cret@h/x?q=1")
    with pytest.raises(ConfigurationError) as caught:
        omnivid.AsyncClient("apimart", api_key="k")
    assert "s3cret" not in str(caught.value)
    assert "http://***@h/x?q=1" in str(caught.value)


@pytest.mark.anyio
async def test_a_client_reaches_the_server_the_variable_names(
    monkeypatch: pytest.MonkeyPatch, sim: Simulator
) -> None:
    """With only the variables set (key and base URL), requests go to that server."""
    monkeypatch.setenv("APIMART_API_KEY", sim.api_key)
    monkeypatch.setenv("OMNIVID_APIMART_BASE_URL", sim.base_url("apimart"))
    polls = sim.stats.polls
    async with omnivid.AsyncClient("apimart") as client:
        with pytest.raises(NotFoundError):
            await client.get("task_nope")
    assert sim.stats.polls == polls + 1


def test_the_command_line_reads_the_variables_the_same_way() -> None:
    """The CLI's endpoints use the same rule: a malformed variable names itself, and
    --base-url refuses what base_url= refuses."""
    env = {"APIMART_API_KEY": "k", "OMNIVID_APIMART_BASE_URL": "http://"}
    with pytest.raises(ConfigurationError, match=r"^OMNIVID_APIMART_BASE_URL='http://': has no"):
        real_endpoints(["apimart"], {}, environ=env)
    env["OMNIVID_APIMART_BASE_URL"] = "http://h/apimart/"
    assert real_endpoints(["apimart"], {}, environ=env)["apimart"].base_url == "http://h/apimart"
    with pytest.raises(UsageError, match="must not have a query"):
        parse_base_urls(["apimart=http://h/?x=1"], ["apimart"])
