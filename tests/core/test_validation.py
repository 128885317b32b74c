"""Every documented rule is checked locally: a bad request never reaches the network.

The table holds bad requests for the three models. Each row is submitted through a client
pointed at the simulator, over a recording aiohttp session; the test asserts the
``ValidationError`` names the field, the value and the rule, and that neither the session
nor the simulator saw a single request. Local media files are written per test:
``@png``-style placeholders in a row stand for them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wirehelp import Recorder

import omnivid
from omnivid.errors import ValidationError
from omnivid.testing import Simulator, video_bytes

GEMINI = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
R2V = "gemini-omni-flash-reference-to-video"
URL = "https://example.com/a.jpg"
VIDEO = "https://example.com/clip.mp4"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)


def media(tmp: Path) -> dict[str, str]:
    """Local files for the ``@name`` placeholders."""
    files = {"png": PNG, "jpg": JPEG, "webp": WEBP, "mp4": video_bytes("v"), "txt": b"hello"}
    out = {}
    for name, data in files.items():
        path = tmp / f"sample.{name}"
        path.write_bytes(data)
        out[f"@{name}"] = str(path)
    (tmp / "folder.png").mkdir()
    out["@dir"] = str(tmp / "folder.png")
    out["@missing"] = str(tmp / "nope.png")
    out["@under_file"] = str(tmp / "sample.txt" / "x.png")
    return out


def resolve(value: Any, files: dict[str, str]) -> Any:
    """Replace ``@name`` placeholders (also inside lists) by file paths."""
    if isinstance(value, str):
        return files.get(value, value)
    if isinstance(value, list):
        return [resolve(v, files) for v in value]
    return value


# provider, request fields, expected field, words of the rule (all must appear in the message)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # --- APIMart gemini-omni-flash-preview -----------------------------------------------
    ("apimart", {"model": GEMINI}, "prompt", "needs a prompt, images or a video"),
    ("apimart", {"model": GEMINI, "prompt": "   "}, "prompt", "needs a prompt"),
    ("apimart", {"model": GEMINI, "prompt": 123}, "prompt", "must be a string"),
    ("apimart", {"model": GEMINI, "images": [URL] * 17}, "images", "at most 16"),
    ("apimart", {"model": GEMINI, "videos": [VIDEO, VIDEO]}, "videos", "at most 1"),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "aspect_ratio": "1:1"},
        "aspect_ratio",
        "16:9 or 9:16",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "aspect_ratio": "4:3"},
        "aspect_ratio",
        "16:9 or 9:16",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "resolution": "1080p"},
        "resolution",
        "accepts 720p",
    ),
    ("apimart", {"model": GEMINI, "prompt": "p", "resolution": "4k"}, "resolution", "accepts 720p"),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "duration": 6},
        "duration",
        "no duration parameter",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "generation_type": "frame"},
        "generation_type",
        "no generation_type",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "callback_url": "https://h.example.com/cb"},
        "callback_url",
        "no callback_url",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "images": ["@png"]},
        "images[0]",
        "does not accept local files for images; upload the image and pass its public http(s) URL",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "images": ["data:image/png;base64,iVBORw0KGgo="]},
        "images[0]",
        "does not accept data URLs",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "images": ["ftp://example.com/a.png"]},
        "images[0]",
        "only http(s) URLs",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "videos": ["@missing"]},
        "videos[0]",
        "no such file",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "videos": ["@png"]},
        "videos[0]",
        "file type image/png is not accepted for videos",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "videos": ["data:image/png;base64,AAAA"]},
        "videos[0]",
        "video type image/png is not accepted",
    ),
    (
        "apimart",
        {"model": GEMINI, "prompt": "p", "extra": {"prompt": "again"}},
        "extra.prompt",
        "already set",
    ),
    ("apimart", {"model": "gemini-omni-flash"}, "model", "apimart offers"),
    ("apimart", {"model": R2V, "prompt": "p", "images": [URL]}, "model", "apimart offers"),
    # --- APIMart Omni-Flash-Ext -------------------------------------------------------------
    ("apimart", {"model": EXT}, "prompt", "requires a non-empty prompt"),
    ("apimart", {"model": EXT, "prompt": ""}, "prompt", "requires a non-empty prompt"),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 7}, "duration", "4, 6, 8 or 10"),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 5}, "duration", "4, 6, 8 or 10"),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 12}, "duration", "4, 6, 8 or 10"),
    ("apimart", {"model": EXT, "prompt": "p", "duration": "auto"}, "duration", "4, 6, 8 or 10"),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 6.5}, "duration", "4, 6, 8 or 10"),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "resolution": "480p"},
        "resolution",
        "720p, 1080p or 4k",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "resolution": "2K"},
        "resolution",
        "720p, 1080p or 4k",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "aspect_ratio": "1:1"},
        "aspect_ratio",
        "16:9 or 9:16",
    ),
    ("apimart", {"model": EXT, "prompt": "p", "images": [URL] * 2}, "images", "0, 1 or 3 images"),
    ("apimart", {"model": EXT, "prompt": "p", "images": [URL] * 4}, "images", "0, 1 or 3 images"),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "generation_type": "frame", "images": [URL] * 3},
        "images",
        "frame' takes exactly 1 image",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "generation_type": "frame"},
        "images",
        "frame' takes exactly 1 image",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "generation_type": "reference", "images": [URL] * 2},
        "images",
        "'reference' takes 1 or 3",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "generation_type": "reference"},
        "images",
        "'reference' takes 1 or 3",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "generation_type": "first_last"},
        "generation_type",
        "frame or reference",
    ),
    ("apimart", {"model": EXT, "prompt": "p", "videos": [VIDEO, VIDEO]}, "videos", "0 or 1 video"),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "videos": [VIDEO], "duration": 6},
        "duration",
        "not take duration together with videos",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "extend_from": "task_1"},
        "extend_from",
        "no extend_from",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "callback_url": "https://h.example.com/cb"},
        "callback_url",
        "no callback_url",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "videos": ["data:video/mp4;base64,AAAA"]},
        "videos[0]",
        "does not accept data URLs",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "videos": ["@mp4"]},
        "videos[0]",
        "does not accept local files for videos",
    ),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "images": ["@jpg"]},
        "images[0]",
        "upload the image and pass its public http(s) URL",
    ),
    ("apimart", {"model": EXT, "prompt": "p", "size": "1:1"}, "size", "16:9 or 9:16"),
    (
        "apimart",
        {"model": EXT, "prompt": "p", "extra": {"size": "9:16"}},
        "extra.size",
        "use the named field size",
    ),
    # --- EvoLink gemini-omni-flash-reference-to-video -----------------------------------
    ("evolink", {"model": R2V, "images": [URL]}, "prompt", "requires a non-empty prompt"),
    ("evolink", {"model": R2V, "prompt": "p"}, "images", "1 to 6 reference images"),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL] * 7},
        "images",
        "1 to 6 reference images",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": 2},
        "duration",
        "3, 4, 5, 6, 7, 8, 9, 10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": 11},
        "duration",
        "10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": 0},
        "duration",
        "10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": "long"},
        "duration",
        "10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": 6.5},
        "duration",
        "10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "duration": True},
        "duration",
        "10 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "aspect_ratio": "4:3"},
        "aspect_ratio",
        "16:9, 9:16 or auto",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "videos": [VIDEO]},
        "videos",
        "no videos parameter",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "resolution": "720p"},
        "resolution",
        "no resolution parameter",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "generation_type": "reference"},
        "generation_type",
        "no generation_type",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "extend_from": "task-1"},
        "extend_from",
        "no extend_from",
    ),
    (
        "evolink",
        {
            "model": R2V,
            "prompt": "p",
            "images": [URL],
            "callback_url": "http://hooks.example.com/cb",
        },
        "callback_url",
        "https:// URL",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "hooks.example.com/cb"},
        "callback_url",
        "https:// URL",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://127.0.0.1/cb"},
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://10.1.2.3/cb"},
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://172.16.5.4/cb"},
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {
            "model": R2V,
            "prompt": "p",
            "images": [URL],
            "callback_url": "https://192.168.0.10:8443/cb",
        },
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {
            "model": R2V,
            "prompt": "p",
            "images": [URL],
            "callback_url": "https://169.254.169.254/latest",
        },
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://[::1]/cb"},
        "callback_url",
        "public address",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://localhost/cb"},
        "callback_url",
        "public host",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://printer.local/cb"},
        "callback_url",
        "public host",
    ),
    (
        "evolink",
        {
            "model": R2V,
            "prompt": "p",
            "images": [URL],
            "callback_url": "https://h.example.com/" + "a" * 2040,
        },
        "callback_url",
        "at most 2048 characters",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL], "callback_url": "https://[::1/cb"},
        "callback_url",
        "not a valid URL",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": ["@txt"]},
        "images[0]",
        "unrecognised content is not accepted for images; use JPEG, PNG, WEBP",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": ["@mp4"]},
        "images[0]",
        "file type video/mp4 is not accepted for images",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": ["data:image/gif;base64,R0lGOD"]},
        "images[0]",
        "image type image/gif is not accepted",
    ),
    ("evolink", {"model": R2V, "prompt": "p", "images": ["@missing"]}, "images[0]", "no such file"),
    ("evolink", {"model": R2V, "prompt": "p", "images": ["@dir"]}, "images[0]", "is a directory"),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": ["@under_file"]},
        "images[0]",
        "cannot read file",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL, 123]},
        "images[1]",
        "must be a non-empty string",
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [""]},
        "images[0]",
        "must be a non-empty string",
    ),
    ("evolink", {"model": EXT, "prompt": "p"}, "model", "evolink offers"),
]


def _row_id(row: tuple[str, dict[str, Any], str, str]) -> str:
    provider, fields, field, _ = row
    model = {GEMINI: "gemini", EXT: "ext", R2V: "r2v"}.get(fields["model"], "other")
    return f"{provider}-{model}-{field}"


def test_table_has_at_least_forty_rows() -> None:
    """The issue asks for at least 40 bad requests; every model has rows."""
    assert len(BAD) >= 40
    assert {row[1]["model"] for row in BAD} >= {GEMINI, EXT, R2V}


@pytest.mark.anyio
@pytest.mark.parametrize("row", BAD, ids=[_row_id(r) for r in BAD])
async def test_bad_request_is_refused_before_any_http(
    row: tuple[str, dict[str, Any], str, str],
    sim: Simulator,
    recorder: Recorder,
    make_client: Callable[..., omnivid.AsyncClient],
    tmp_path: Path,
) -> None:
    """The bad request raises a ValidationError naming field, value and rule; no HTTP at all."""
    provider, fields, field, rule = row
    files = media(tmp_path)
    fields = {k: resolve(v, files) for k, v in fields.items()}
    request = omnivid.VideoRequest(**fields)
    client = make_client(provider, session=recorder.session, allow_private_callbacks=False)
    async with client:
        with pytest.raises(ValidationError) as caught:
            await client.submit(request)
    err = caught.value
    message = str(err)
    assert err.field == field
    assert message.startswith(f"{field}=")
    assert rule in message
    assert err.rule in message
    assert repr(err.value)[:40].rstrip(".") in message or "item(s)" in message
    assert recorder.sent == []
    assert sim.stats.submits == 0 and sim.request_log == []


@pytest.mark.anyio
@pytest.mark.parametrize("row", BAD[:3], ids=[_row_id(r) for r in BAD[:3]])
async def test_generate_also_validates_first(
    row: tuple[str, dict[str, Any], str, str],
    sim: Simulator,
    recorder: Recorder,
    make_client: Callable[..., omnivid.AsyncClient],
) -> None:
    """generate() refuses a bad request the same way, before any traffic."""
    provider, fields, _, _ = row
    async with make_client(provider, session=recorder.session) as client:
        with pytest.raises(ValidationError):
            await client.generate(omnivid.VideoRequest(**fields))
    assert recorder.sent == [] and sim.request_log == []


# --- accepted requests: the body built is what the provider (simulator) accepts -------------

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("apimart", {"model": GEMINI, "prompt": "p", "resolution": "720P", "aspect_ratio": "9:16"}),
    ("apimart", {"model": GEMINI, "images": [URL] * 16}),
    ("apimart", {"model": GEMINI, "videos": ["@mp4"]}),
    (
        "apimart",
        {
            "model": GEMINI,
            "videos": ["data:video/mp4;base64," + base64.b64encode(video_bytes("d")).decode()],
        },
    ),
    ("apimart", {"model": EXT, "prompt": "p", "duration": 4, "resolution": "4K"}),
    ("apimart", {"model": EXT, "prompt": "p", "generation_type": "frame", "images": [URL]}),
    ("apimart", {"model": EXT, "prompt": "p", "generation_type": "reference", "images": [URL] * 3}),
    ("apimart", {"model": EXT, "prompt": "p", "images": [URL], "videos": [VIDEO]}),
    ("apimart", {"model": EXT, "prompt": "p", "aspect_ratio": "9:16", "size": "9:16"}),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": ["@png", "@jpg", "@webp"], "duration": "auto"},
    ),
    (
        "evolink",
        {"model": R2V, "prompt": "p", "images": [URL] * 6, "duration": 3, "aspect_ratio": "auto"},
    ),
    ("evolink", {"model": R2V, "prompt": "p", "images": [base64.b64encode(PNG * 3).decode()]}),
    (
        "evolink",
        {
            "model": R2V,
            "prompt": "p",
            "images": [URL],
            "callback_url": "https://hooks.example.com/x",
        },
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("row", GOOD, ids=[_row_id((r[0], r[1], "ok", "")) for r in GOOD])
async def test_good_request_is_accepted_by_the_provider(
    row: tuple[str, dict[str, Any]],
    sim: Simulator,
    make_client: Callable[..., omnivid.AsyncClient],
    tmp_path: Path,
) -> None:
    """A request at the edge of the rules validates locally and the simulator accepts it."""
    provider, fields = row
    files = media(tmp_path)
    fields = {k: resolve(v, files) for k, v in fields.items()}
    async with make_client(provider, allow_private_callbacks=False) as client:
        task = await client.submit(omnivid.VideoRequest(**fields))
    assert task.status is omnivid.TaskStatus.PENDING
    assert sim.stats.tasks == [task.id]


def test_local_image_becomes_a_data_url_for_evolink(tmp_path: Path) -> None:
    """EvoLink takes local images: the file is sent as a data URL of its sniffed type."""
    path = tmp_path / "photo.bin"
    path.write_bytes(JPEG)
    client = omnivid.AsyncClient("evolink", api_key="k")
    body = client.build_body(omnivid.VideoRequest(model=R2V, prompt="p", images=[str(path)]))
    assert body["image_urls"] == ["data:image/jpeg;base64," + base64.b64encode(JPEG).decode()]


def test_local_video_becomes_a_data_url_for_gemini(tmp_path: Path) -> None:
    """APIMart gemini takes a local video as data:video/mp4."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(video_bytes("clip"))
    client = omnivid.AsyncClient("apimart", api_key="k")
    body = client.build_body(omnivid.VideoRequest(model=GEMINI, videos=[str(path)]))
    assert body["video_urls"][0].startswith("data:video/mp4;base64,")
    assert base64.b64decode(body["video_urls"][0].split(",", 1)[1]) == path.read_bytes()


def test_resolution_is_sent_lowercase() -> None:
    """Resolutions are case-insensitive and sent in the documented lower case."""
    client = omnivid.AsyncClient("apimart", api_key="k")
    body = client.build_body(omnivid.VideoRequest(model=EXT, prompt="p", resolution="1080P"))
    assert body["resolution"] == "1080p"


def test_extra_is_passed_through_unchanged() -> None:
    """extra fields are merged into the body as given."""
    client = omnivid.AsyncClient("evolink", api_key="k")
    request = omnivid.VideoRequest(
        model=R2V, prompt="p", images=[URL], extra={"seed": 7, "new_flag": {"a": [1]}}
    )
    body = client.build_body(request)
    assert (body["seed"], body["new_flag"]) == (7, {"a": [1]})


def test_private_callbacks_allowed_only_when_asked() -> None:
    """allow_private_callbacks=True lets a loopback http callback through (for tests)."""
    request = omnivid.VideoRequest(
        model=R2V, prompt="p", images=[URL], callback_url="http://127.0.0.1:9/cb"
    )
    omnivid.AsyncClient("evolink", api_key="k", allow_private_callbacks=True).validate(request)
    with pytest.raises(ValidationError):
        omnivid.AsyncClient("evolink", api_key="k").validate(request)


@pytest.mark.anyio
async def test_the_no_http_check_does_see_traffic(
    sim: Simulator, recorder: Recorder, make_client: Callable[..., omnivid.AsyncClient]
) -> None:
    """Control: a valid submit over the recording session is seen by recorder and simulator."""
    async with make_client("apimart", session=recorder.session) as client:
        await client.submit(omnivid.VideoRequest(model=EXT, prompt="p"))
    assert recorder.count("POST") == 1
    assert sim.stats.submits == 1
