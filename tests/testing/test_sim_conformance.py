"""Every response shape of the simulator against the example payloads of the seed documents."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from simhelp import SEEDS, body, create, poll, seed, shape, submit, task_data, wait_status

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

REQUEST_EXAMPLES = sorted(path.name for path in SEEDS.glob("*_request_*.json"))


def test_fixtures_match_the_seed_documents() -> None:
    """Each APIMart response fixture's text appears verbatim (indentation aside) in its seed."""
    shared = SEEDS.parents[3] / "shared" / "seeds"
    if not shared.is_dir():
        pytest.skip("the seed documents (../shared/seeds) are not beside this checkout")
    for path in SEEDS.glob("apimart_*.json"):
        pattern = "003_*.txt"
        if path.name.endswith("_ja.json"):
            pattern = "001_*.txt"
        elif path.name.startswith("apimart_gemini"):
            pattern = "000_*.txt"
        seed_text = "".join(next(shared.glob(pattern)).read_text(encoding="utf-8").split())
        assert "".join(path.read_text(encoding="utf-8").split()) in seed_text, path.name


@pytest.mark.parametrize("name", REQUEST_EXAMPLES)
async def test_documented_request_examples_are_accepted(
    sim: Simulator, http: aiohttp.ClientSession, name: str
) -> None:
    """Every request example in the documents is a valid submit."""
    provider = name.split("_")[0]
    resp = await submit(http, sim, provider, seed(name))
    assert resp.status == 200, await resp.text()


async def test_apimart_submit_matches_example(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """APIMart's submit body has the example's shape and a ULID-like task id."""
    resp = await submit(http, sim, "apimart", body("apimart"))
    payload = await resp.json()
    assert shape(payload) == shape(seed("apimart_submit_200.json"))
    task_id = payload["data"][0]["task_id"]
    assert task_id.startswith("task_01") and len(task_id) == len("task_") + 26


async def test_evolink_submit_matches_example(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """EvoLink's submit body has the schema example's keys, types and id form."""
    resp = await submit(http, sim, "evolink", body("evolink"))
    payload = await resp.json()
    example = seed("evolink_submit_200.json")
    assert list(payload) == list(example)
    assert shape(payload) == shape(example)
    assert payload["usage"]["credits_reserved"] == example["usage"]["credits_reserved"]
    assert payload["id"].startswith(f"task-unified-{payload['created']}-")


@pytest.mark.parametrize(
    ("model", "fixture"),
    [
        ("Omni-Flash-Ext", "apimart_ext_task_completed.json"),
        ("gemini-omni-flash-preview", "apimart_gemini_task_completed.json"),
    ],
)
async def test_apimart_completed_task_matches_example(
    sim: Simulator, http: aiohttp.ClientSession, model: str, fixture: str
) -> None:
    """A completed APIMart task has the example's keys, in order, and value kinds."""
    task_id = await create(http, sim, "apimart", model=model)
    payload = await wait_status(http, sim, "apimart", task_id)
    example = seed(fixture)
    assert list(payload["data"]) == list(example["data"])
    assert shape(payload) == shape(example)
    assert payload["data"]["cost"] == example["data"]["cost"]
    assert payload["data"]["credits_cost"] == example["data"]["credits_cost"]
    assert payload["data"]["estimated_time"] == example["data"]["estimated_time"]


async def test_apimart_failed_task_matches_example(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A failed APIMart task has the example's keys, zero cost and code task_failed."""
    task_id = await create(http, sim, "apimart", markers="[[fail:timeout]]")
    payload = await wait_status(http, sim, "apimart", task_id)
    example = seed("apimart_ext_task_failed.json")
    assert list(payload["data"]) == list(example["data"])
    assert shape(payload) == shape(example)
    assert json.dumps(payload["data"]["cost"]) == "0"
    assert payload["data"]["error"]["code"] == "task_failed"


@pytest.mark.parametrize(
    ("markers", "fixture"),
    [("", "evolink_task_completed.json"), ("[[fail:moderation]]", "evolink_task_failed.json")],
)
async def test_evolink_task_matches_example(
    sim: Simulator, http: aiohttp.ClientSession, markers: str, fixture: str
) -> None:
    """EvoLink task bodies carry the documented fields (plus usage) with the right kinds."""
    task_id = await create(http, sim, "evolink", markers=markers)
    payload = await wait_status(http, sim, "evolink", task_id)
    example = seed(fixture)
    assert set(payload) - set(example) == {"usage"}
    assert shape({k: payload[k] for k in example}) == shape(example)


async def test_evolink_pending_task_has_no_results(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A task still running shows status, progress and task_info but no results or error."""
    task_id = await create(http, sim, "evolink", markers="[[duration=5000]]")
    payload = await (await poll(http, sim, "evolink", task_id)).json()
    assert payload["status"] in ("pending", "processing")
    assert "results" not in payload and "error" not in payload
    assert payload["task_info"]["estimated_time"] == 60


@pytest.mark.parametrize("status", [401, 402, 429])
async def test_apimart_errors_are_the_documented_bodies(
    http: aiohttp.ClientSession, status: int
) -> None:
    """APIMart's 401/402/429 bodies are exactly the documents' examples."""
    async with Simulator(api_keys={"good", "poor"}, budgets={"poor": 0.0}) as sim:
        key, payload = {
            401: ("bad", body("apimart")),
            402: ("poor", body("apimart")),
            429: ("good", body("apimart", "[[fault:429]]")),
        }[status]
        resp = await submit(http, sim, "apimart", payload, key=key)
    assert resp.status == status
    assert await resp.json() == seed(f"apimart_error_{status}.json")


async def test_apimart_400_matches_example(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A body that is not JSON gets exactly the documented 400."""
    resp = await submit(http, sim, "apimart", "{not json")
    assert resp.status == 400
    assert await resp.json() == seed("apimart_error_400.json")


async def test_apimart_japanese_messages(http: aiohttp.ClientSession) -> None:
    """With language="ja" the APIMart errors are the Japanese document's bodies."""
    async with Simulator(language="ja", api_keys={"good"}) as sim:
        resp = await submit(http, sim, "apimart", body("apimart"), key="bad")
    assert await resp.json() == seed("apimart_error_401_ja.json")


@pytest.mark.parametrize("status", [400, 401, 402, 403, 429, 500])
async def test_evolink_errors_are_the_documented_bodies(
    http: aiohttp.ClientSession, status: int
) -> None:
    """Each of EvoLink's documented error responses is produced exactly."""
    model = "gemini-omni-flash-reference-to-video"
    async with Simulator(
        api_keys={"good", "poor", "denied"},
        budgets={"poor": 0.0},
        denied_models={"denied": [model]},
    ) as sim:
        key, payload, raw = {
            400: ("good", None, "[]"),
            401: ("bad", body("evolink"), None),
            402: ("poor", body("evolink"), None),
            403: ("denied", body("evolink"), None),
            429: ("good", body("evolink", "[[fault:429]]"), None),
            500: ("good", body("evolink", "[[fault:500]]"), None),
        }[status]
        resp = await submit(http, sim, "evolink", raw if raw is not None else payload, key=key)
    assert resp.status == status
    assert await resp.json() == seed(f"evolink_error_{status}.json")


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("apimart", {"code": 404, "type": "not_found_error"}),
        ("evolink", {"code": "task_not_found", "type": "invalid_request_error"}),
    ],
)
async def test_unknown_task_is_404_in_provider_shape(
    sim: Simulator, http: aiohttp.ClientSession, provider: str, expected: dict[str, Any]
) -> None:
    """Polling an unknown task id gives 404 with the provider's error shape."""
    resp = await poll(http, sim, provider, "task_nope")
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert {k: error[k] for k in expected} == expected
    assert isinstance(error["message"], str)


async def test_task_of_other_provider_is_not_found(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An APIMart task id is unknown under the EvoLink prefix."""
    task_id = await create(http, sim, "apimart")
    assert (await poll(http, sim, "evolink", task_id)).status == 404


async def test_string_url_form(http: aiohttp.ClientSession) -> None:
    """With url_form="string", APIMart's result url is a plain string."""
    async with Simulator(time_scale=0.0001, url_form="string") as sim:
        task_id = await create(http, sim, "apimart")
        payload = await wait_status(http, sim, "apimart", task_id)
    video = task_data("apimart", payload)["result"]["videos"][0]
    assert isinstance(video["url"], str) and video["url"].endswith(".mp4")


async def test_every_api_response_has_a_request_id(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Successes and errors alike carry a distinct X-Request-Id header."""
    ok = await submit(http, sim, "apimart", body("apimart"))
    bad = await submit(http, sim, "evolink", "{}")
    ids = {ok.headers.get("X-Request-Id"), bad.headers.get("X-Request-Id")}
    assert None not in ids and len(ids) == 2
