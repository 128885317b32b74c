"""The gaps issue 14 found in local validation, closed: each bad request fails before any
request with a ``ValidationError`` naming field, value and rule, and the simulator refuses the
body it would have produced; each good one is built as the simulator accepts it.

Callback hosts in any spelling, inline image bytes, wrong types, documented fields smuggled
through ``extra``, whole-number floats, and the seeds' edges (any ``data:video`` subtype,
Omni-Flash-Ext's ``size``, Gemini's aspect ratio).
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from wirehelp import Recorder

import omnivid
from omnivid.errors import ValidationError
from omnivid.testing import Simulator

GEMINI = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
R2V = "gemini-omni-flash-reference-to-video"
URL = "https://example.com/a.png"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(32)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# the wire names of the request fields, for writing the body a request would have become
WIRE = {"images": "image_urls", "videos": "video_urls", "extend_from": "extend_from_task_id"}


def wire_body(fields: dict[str, Any]) -> dict[str, Any]:
    """The body a request with ``fields`` would have been sent as, without local checks."""
    body = {WIRE.get(k, k): v for k, v in fields.items() if k != "extra"}
    body.update(fields.get("extra", {}))
    return body


def r2v(**fields: Any) -> dict[str, Any]:
    return {"model": R2V, "prompt": "p", "images": [URL], **fields}


# provider, request fields, field named, words of the rule
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    # callback hosts: loopback and private in every spelling
    ("evolink", r2v(callback_url="https://2130706433/cb"), "callback_url", "is 127.0.0.1"),
    ("evolink", r2v(callback_url="https://127.1/cb"), "callback_url", "127.1 is 127.0.0.1"),
    ("evolink", r2v(callback_url="https://0x7f.1/cb"), "callback_url", "0x7f.1 is 127.0.0.1"),
    ("evolink", r2v(callback_url="https://0177.0.0.1/cb"), "callback_url", "is 127.0.0.1"),
    (
        "evolink",
        r2v(callback_url="https://[::ffff:127.0.0.1]/cb"),
        "callback_url",
        "::ffff:127.0.0.1 is 127.0.0.1",
    ),
    (
        "evolink",
        r2v(callback_url="https://[::ffff:10.0.0.8]/cb"),
        "callback_url",
        "not a private or loopback one",
    ),
    ("evolink", r2v(callback_url="https://167772161/cb"), "callback_url", "is 10.0.0.1"),
    ("evolink", r2v(callback_url="https://%31%32%37.0.0.1/cb"), "callback_url", "is 127.0.0.1"),
    ("evolink", r2v(callback_url="https://localhost./cb"), "callback_url", "public host"),
    ("evolink", r2v(callback_url="https://app.localhost/cb"), "callback_url", "public host"),
    ("evolink", r2v(callback_url="https://LOCALHOST/cb"), "callback_url", "public host"),
    ("evolink", r2v(callback_url="https://09.1.1.1/cb"), "callback_url", "not a valid URL"),
    (
        "evolink",
        r2v(callback_url="https://hooks.example.com\\@127.0.0.1/cb"),
        "callback_url",
        "backslash",
    ),
    ("evolink", r2v(callback_url="https://hooks.example.com:99999/cb"), "callback_url", "valid"),
    # image data: decoded, checked by magic number
    (
        "evolink",
        r2v(images=["data:image/png;base64,iVBORw0KGgo!!!broken"]),
        "images[0]",
        "not valid base64",
    ),
    ("evolink", r2v(images=[b64(GIF)]), "images[0]", "image/gif, not JPEG, PNG, WEBP"),
    ("evolink", r2v(images=["A" * 96]), "images[0]", "unrecognised content"),
    ("evolink", r2v(images=[f"data:image/png,{b64(PNG)}"]), "images[0]", "declare ;base64"),
    (
        "evolink",
        r2v(images=[f"data:image/png;base64,{b64(JPEG)}"]),
        "images[0]",
        "declares image/png but holds image/jpeg",
    ),
    ("evolink", r2v(images=["data:image/png;base64,"]), "images[0]", "not valid base64"),
    # wrong types
    ("apimart", {"model": GEMINI, "prompt": "p", "extend_from": ""}, "extend_from", "non-empty"),
    ("apimart", {"model": GEMINI, "prompt": "p", "extend_from": "  "}, "extend_from", "task id"),
    # documented fields through extra
    (
        "apimart",
        {"model": EXT, "prompt": "p", "extra": {"duration": 7}},
        "extra.duration",
        "use the named field duration",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "extra": {"resolution": "8k"}},
        "extra.resolution",
        "use the named field resolution",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "extra": {"image_urls": [URL, URL]}},
        "extra.image_urls",
        "use the named field images",
    ),
    (
        "evolink",
        r2v(extra={"callback_url": "https://127.0.0.1/cb"}),
        "extra.callback_url",
        "use the named field callback_url",
    ),
    (
        "evolink",
        r2v(extra={"duration": 42}),
        "extra.duration",
        "use the named field duration",
    ),
    # Gemini's data:video must be base64
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "videos": ["data:video/mp4,AAAA"]},
        "videos[0]",
        "declare ;base64",
    ),
]


def _id(row: tuple[str, dict[str, Any], str, str]) -> str:
    provider, fields, field, _ = row
    return f"{provider}-{field}-{str(fields.get('callback_url') or fields)[:40]}"


@pytest.mark.anyio
@pytest.mark.parametrize("row", REFUSED, ids=[_id(r) for r in REFUSED])
async def test_refused_locally_and_by_the_simulator(
    row: tuple[str, dict[str, Any], str, str],
    sim: Simulator,
    recorder: Recorder,
    make_client: Callable[..., omnivid.AsyncClient],
) -> None:
    """The client refuses it with no HTTP at all; the body it would have sent gets a 400."""
    provider, fields, field, rule = row
    request = omnivid.VideoRequest(**fields)
    client = make_client(provider, session=recorder.session, allow_private_callbacks=False)
    async with client:
        with pytest.raises(ValidationError) as caught:
            await client.submit(request)
    err = caught.value
    assert err.field == field and str(err).startswith(f"{field}=") and rule in str(err)
    assert recorder.sent == [] and sim.request_log == []
    sim.configure(allow_loopback_callbacks=False)
    url = f"{sim.base_url(provider)}/v1/videos/generations"
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=json.dumps(wire_body(fields)), headers=headers) as answer,
    ):
        assert answer.status == 400, await answer.text()


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("evolink", r2v(images=[f"data:image/jpg;base64,{b64(JPEG)}"])),
    ("evolink", r2v(images=[f"data:image/JPEG;base64,{b64(JPEG)}"])),
    ("evolink", r2v(images=[b64(PNG)])),
    ("evolink", r2v(callback_url="https://8.8.8.8/cb")),
    ("evolink", r2v(callback_url="https://hooks.example.com./cb")),
    ("apimart", {"model": GEMINI, "videos": ["data:video/x-matroska;base64,GkXfow=="]}),
    ("apimart", {"model": GEMINI, "videos": ["data:video/ogg;codecs=theora;base64,T2dnUw=="]}),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 6.0}),
    ("apimart", {"model": EXT, "prompt": "p", "size": "9:16"}),
    ("evolink", r2v(duration=5.0)),
]


@pytest.mark.anyio
@pytest.mark.parametrize("row", ACCEPTED, ids=[str(r[1])[:60] for r in ACCEPTED])
async def test_accepted_locally_and_by_the_simulator(
    row: tuple[str, dict[str, Any]],
    sim: Simulator,
    make_client: Callable[..., omnivid.AsyncClient],
) -> None:
    """The edge passes local checks and the simulator creates the task."""
    provider, fields = row
    sim.configure(allow_loopback_callbacks=False)
    async with make_client(provider, allow_private_callbacks=False) as client:
        task = await client.submit(omnivid.VideoRequest(**fields))
    assert sim.stats.tasks == [task.id]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"images": 123}, "images"),
        ({"videos": {"a": 1}}, "videos"),
        ({"images": b"\x89PNG"}, "images"),
        ({"extra": "size=9:16"}, "extra"),
        ({"extra": ["size", "9:16"]}, "extra"),
        ({"extra": {1: "x"}}, "extra"),
    ],
)
def test_wrong_types_are_validation_errors_at_construction(
    fields: dict[str, Any], field: str
) -> None:
    """Not a TypeError or ValueError from deep inside: a ValidationError naming the field."""
    with pytest.raises(ValidationError) as caught:
        omnivid.VideoRequest(model=EXT, prompt="p", **fields)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}=")


def test_whole_number_duration_is_sent_as_an_integer() -> None:
    """duration=6.0 is sent as 6 (the server refuses 6.0); 6.5 is still refused."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    body = client.build_body(omnivid.VideoRequest(model=EXT, prompt="p", duration=6.0))
    assert body["duration"] == 6 and type(body["duration"]) is int
    assert json.dumps(body["duration"]) == "6"
    with pytest.raises(ValidationError, match="4, 6, 8 or 10"):
        client.build_body(omnivid.VideoRequest(model=EXT, prompt="p", duration=6.5))


@pytest.mark.anyio
async def test_simulator_refuses_a_float_duration(sim: Simulator) -> None:
    """What 6.0 on the wire used to get: a 400 invalid_duration (why the client sends 6)."""
    url = f"{sim.base_url('apimart')}/v1/videos/generations"
    body = {"model": EXT, "prompt": "p", "duration": 6.0}
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=json.dumps(body), headers=headers) as answer,
    ):
        assert answer.status == 400
        assert (await answer.json())["error"]["type"] == "invalid_duration"


@pytest.mark.anyio
async def test_ext_size_differing_from_aspect_ratio_warns_and_is_sent(
    sim: Simulator, make_client: Callable[..., omnivid.AsyncClient]
) -> None:
    """size is a named field; a value other than aspect_ratio's is a warning, not a refusal,
    and both go out as given (the simulator accepts them, as the seed only advises)."""
    request = omnivid.VideoRequest(model=EXT, prompt="p", aspect_ratio="16:9", size="9:16")
    async with make_client("apimart") as client:
        with pytest.warns(UserWarning, match="size='9:16' differs from aspect_ratio='16:9'"):
            body = client.build_body(request)
        with pytest.warns(UserWarning):
            task = await client.submit(request)
    assert (body["aspect_ratio"], body["size"]) == ("16:9", "9:16")
    assert sim.stats.tasks == [task.id]


def test_equal_size_and_aspect_ratio_do_not_warn() -> None:
    """Keeping them equal, as the seed advises, is silent."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = client.build_body(
            omnivid.VideoRequest(model=EXT, prompt="p", aspect_ratio="9:16", size="9:16")
        )
    assert body["size"] == "9:16"


@pytest.mark.parametrize("model", [GEMINI, R2V])
def test_size_belongs_to_omni_flash_ext_only(model: str) -> None:
    """The other models have no size parameter."""
    client = omnivid.AsyncClient("apimart" if model == GEMINI else "evolink", api_key="k")
    with pytest.raises(ValidationError, match="has no size parameter") as caught:
        client.validate(omnivid.VideoRequest(**{**r2v(), "model": model, "size": "9:16"}))
    assert caught.value.field == "size"


def test_gemini_aspect_ratio_message_says_the_server_renders_16_9() -> None:
    """Gemini refuses 1:1 locally, saying the server would render it as 16:9 (the seed: other
    values are treated as 16:9), so the caller knows what they would have got."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    with pytest.raises(ValidationError) as caught:
        client.validate(omnivid.VideoRequest(model=GEMINI, prompt="p", aspect_ratio="1:1"))
    assert caught.value.field == "aspect_ratio" and caught.value.value == "1:1"
    assert "the server would render any other value as 16:9" in str(caught.value)


def test_extra_fields_omnivid_does_not_know_still_pass_through() -> None:
    """Undocumented fields in extra are sent unchanged, as before."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    body = client.build_body(omnivid.VideoRequest(model=EXT, prompt="p", extra={"seed": 7}))
    assert body["seed"] == 7


def test_bare_base64_is_never_looked_up_as_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare base64 image is recognised by its text: no filesystem probe (stat, open)."""
    import os
    import pathlib

    probes: list[str] = []
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        probes.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(pathlib.Path, "exists", lambda self: probes.append(str(self)) or False)
    client = omnivid.AsyncClient("evolink", api_key="k")
    value = b64(PNG * 3)
    body = client.build_body(omnivid.VideoRequest(**r2v(images=[value])))
    assert body["image_urls"] == [value]
    assert not any(value[:20] in p for p in probes)
