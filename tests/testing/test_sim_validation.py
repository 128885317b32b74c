"""Every documented request rule, with the documented status, code and type."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest
from simhelp import EVO, EXT, GEMINI, create, submit

from omnivid.testing import Simulator

pytestmark = pytest.mark.anyio

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(32)).decode()
IMG = "https://example.com/a.jpg"
VID = "https://example.com/a.mp4"


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = dict(base, **changes)
    return {k: v for k, v in result.items() if v is not None}


EXT_REJECTED = [
    (_with(EXT, model="omni-flash-ext"), "invalid_request_error"),
    (_with(EXT, prompt=""), "invalid_request_error"),
    (_with(EXT, prompt=None), "invalid_request_error"),
    (_with(EXT, duration=7), "invalid_duration"),
    (_with(EXT, duration=5), "invalid_duration"),
    (_with(EXT, duration="6"), "invalid_duration"),
    (_with(EXT, resolution="2k"), "invalid_resolution"),
    (_with(EXT, image_urls=[IMG, IMG]), "unsupported_image_count"),
    (_with(EXT, image_urls=[IMG] * 4), "unsupported_image_count"),
    (_with(EXT, generation_type="frame", image_urls=[IMG] * 3), "unsupported_image_count"),
    (_with(EXT, generation_type="frame"), "unsupported_image_count"),
    (_with(EXT, generation_type="reference"), "unsupported_image_count"),
    (_with(EXT, generation_type="middle", image_urls=[IMG]), "invalid_request_error"),
    (_with(EXT, duration=None, video_urls=[VID, VID]), "unsupported_video_count"),
    (_with(EXT, video_urls=[VID]), "invalid_request_error"),
    (_with(EXT, image_urls=["ftp://example.com/a.jpg"]), "invalid_request_error"),
    (_with(EXT, aspect_ratio="4:3"), "invalid_request_error"),
]
EXT_ACCEPTED = [
    _with(EXT, resolution="4K"),
    _with(EXT, resolution="1080P", duration=10),
    _with(EXT, duration=None),
    _with(EXT, generation_type="frame", image_urls=[IMG]),
    _with(EXT, generation_type="reference", image_urls=[IMG] * 3),
    _with(EXT, duration=None, video_urls=[VID], image_urls=[IMG]),
    _with(EXT, size="9:16", aspect_ratio="9:16"),
]
GEMINI_REJECTED = [
    _with(GEMINI, prompt=None),
    _with(GEMINI, prompt="  "),
    _with(GEMINI, image_urls=[IMG] * 17),
    _with(GEMINI, video_urls=[VID, VID]),
    _with(GEMINI, video_urls=["ftp://example.com/a.mp4"]),
    _with(GEMINI, resolution="1080p"),
    _with(GEMINI, image_urls="https://example.com/a.jpg"),
    _with(GEMINI, extend_from_task_id="task_01UNKNOWN"),
]
GEMINI_ACCEPTED = [
    _with(GEMINI, prompt=None, image_urls=[IMG]),
    _with(GEMINI, prompt=None, video_urls=["data:video/mp4;base64,AAAA"]),
    _with(GEMINI, image_urls=[IMG] * 16),
    _with(GEMINI, aspect_ratio="1:1"),
    _with(GEMINI, resolution="720P"),
]
EVO_REJECTED = [
    _with(EVO, model="Omni-Flash-Ext"),
    _with(EVO, prompt=None),
    _with(EVO, image_urls=None),
    _with(EVO, image_urls=[]),
    _with(EVO, image_urls=[IMG] * 7),
    _with(EVO, image_urls=["not an image"]),
    _with(EVO, image_urls=["data:image/gif;base64,R0lGODlh"]),
    _with(EVO, duration=2),
    _with(EVO, duration=11),
    _with(EVO, duration="10"),
    _with(EVO, duration=True),
    _with(EVO, aspect_ratio="1:1"),
    _with(EVO, callback_url="http://example.com/hook"),
    _with(EVO, callback_url="https://127.0.0.1/hook"),
    _with(EVO, callback_url="https://10.1.2.3/hook"),
    _with(EVO, callback_url="https://172.16.0.1/hook"),
    _with(EVO, callback_url="https://192.168.1.1/hook"),
    _with(EVO, callback_url="https://localhost/hook"),
    _with(EVO, callback_url="https://example.com/" + "a" * 2048),
]
EVO_ACCEPTED = [
    _with(EVO, image_urls=[IMG] * 6),
    _with(EVO, image_urls=[f"data:image/png;base64,{PNG}"]),
    _with(EVO, image_urls=[PNG]),
    _with(EVO, duration=3),
    _with(EVO, duration="auto"),
    _with(EVO, aspect_ratio="auto"),
    _with(EVO, callback_url="https://example.com/hook"),
]


@pytest.mark.parametrize(("payload", "error_type"), EXT_REJECTED)
async def test_omni_flash_ext_rejects(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any], error_type: str
) -> None:
    """Omni-Flash-Ext refuses each documented bad request with 400 and the documented type."""
    resp = await submit(http, sim, "apimart", payload)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["type"]) == (400, error_type)


@pytest.mark.parametrize("payload", EXT_ACCEPTED)
async def test_omni_flash_ext_accepts(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    """Omni-Flash-Ext accepts each documented valid variation."""
    resp = await submit(http, sim, "apimart", payload)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("payload", GEMINI_REJECTED)
async def test_gemini_rejects(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    """gemini-omni-flash-preview refuses each bad request with 400 invalid_request_error."""
    resp = await submit(http, sim, "apimart", payload)
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("payload", GEMINI_ACCEPTED)
async def test_gemini_accepts(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    """gemini-omni-flash-preview accepts each documented valid variation."""
    resp = await submit(http, sim, "apimart", payload)
    assert resp.status == 200, await resp.text()


async def test_gemini_extends_a_completed_task(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """extend_from_task_id naming a completed task of the same key is accepted."""
    first = await create(http, sim, "apimart", model="gemini-omni-flash-preview", duration=None)
    sim.advance(3600)
    resp = await submit(http, sim, "apimart", _with(GEMINI, extend_from_task_id=first))
    assert resp.status == 200


@pytest.mark.parametrize("payload", EVO_REJECTED)
async def test_evolink_rejects(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    """EvoLink refuses each bad request with 400 invalid_request / invalid_request_error."""
    sim.config.allow_loopback_callbacks = False
    resp = await submit(http, sim, "evolink", payload)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["type"]) == ("invalid_request", "invalid_request_error")


@pytest.mark.parametrize("payload", EVO_ACCEPTED)
async def test_evolink_accepts(
    sim: Simulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    """EvoLink accepts each documented valid variation."""
    resp = await submit(http, sim, "evolink", payload)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("raw", ["", "[1, 2]", "null", '"text"', "{bad json"])
@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_undescribed_bodies_get_400(
    sim: Simulator, http: aiohttp.ClientSession, provider: str, raw: str
) -> None:
    """Bodies that are not a JSON object get a plain 400 in the provider's shape."""
    resp = await submit(http, sim, provider, raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_evolink_reserves_credits_by_duration(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """credits_reserved follows the requested duration (10 s -> 102.34, auto counts as 10)."""
    reserved = []
    for duration in (10, 5, "auto"):
        resp = await submit(http, sim, "evolink", _with(EVO, duration=duration))
        reserved.append((await resp.json())["usage"]["credits_reserved"])
    assert reserved == [102.34, 51.17, 102.34]
