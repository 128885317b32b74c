"""Result files: real MP4 bytes, Content-Length, ETag, Range, expiry and truncation."""

from __future__ import annotations

import struct

import aiohttp
import pytest
from simhelp import create, task_data, wait_status

from omnivid.testing import Simulator, video_bytes
from omnivid.testing._media import iter_boxes

pytestmark = pytest.mark.anyio


async def _video_url(
    http: aiohttp.ClientSession, sim: Simulator, provider: str = "apimart", markers: str = ""
) -> str:
    task_id = await create(http, sim, provider, markers=f"{markers} [[duration=5]]")
    data = task_data(provider, await wait_status(http, sim, provider, task_id))
    if provider == "evolink":
        return str(data["results"][0])
    return str(data["result"]["videos"][0]["url"][0])


def test_video_is_a_small_valid_mp4() -> None:
    """The generated file is a few KiB of ftyp, moov (with an avc1 track) and mdat boxes."""
    data = video_bytes("task_x/0")
    assert 2048 < len(data) < 8192
    boxes = dict(iter_boxes(data))
    assert list(boxes)[:3] == [b"ftyp", b"moov", b"mdat"]
    assert boxes[b"ftyp"][:4] == b"isom"
    assert b"avc1" in boxes[b"moov"] and b"avcC" in boxes[b"moov"]
    assert boxes[b"free"] == b"omnivid-sim:task_x/0"


def test_video_sample_table_points_into_mdat() -> None:
    """stco and stsz describe exactly the bytes of the mdat payload."""
    data = video_bytes("t")
    moov = dict(iter_boxes(data))[b"moov"]
    stco = moov[moov.index(b"stco") + 4 :]
    offset = struct.unpack_from(">I", stco, 8)[0]
    stsz = moov[moov.index(b"stsz") + 4 :]
    count = struct.unpack_from(">I", stsz, 8)[0]
    sizes = struct.unpack_from(f">{count}I", stsz, 12)
    mdat_start = data.index(b"mdat") + 4
    assert offset == mdat_start
    assert data[mdat_start - 8 : mdat_start - 4] == struct.pack(">I", 8 + sum(sizes))


@pytest.mark.parametrize("provider", ["apimart", "evolink"])
async def test_result_url_serves_the_video(
    sim: Simulator, http: aiohttp.ClientSession, provider: str
) -> None:
    """A completed task's URL, served by the simulator, returns the MP4 with its headers."""
    url = await _video_url(http, sim, provider)
    assert url.startswith(sim.url + "/files/")
    async with http.get(url) as resp:
        data = await resp.read()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp4"
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert int(resp.headers["Content-Length"]) == len(data)
        assert resp.headers["ETag"].startswith('"')
    assert list(dict(iter_boxes(data)))[:3] == [b"ftyp", b"moov", b"mdat"]
    assert sim.stats.downloads == 1


async def test_range_request_gets_206(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Range: bytes=100- resumes a download with 206 and Content-Range."""
    url = await _video_url(http, sim)
    async with http.get(url) as resp:
        whole = await resp.read()
    async with http.get(url, headers={"Range": "bytes=100-"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        assert await resp.read() == whole[100:]


@pytest.mark.parametrize(
    ("header", "span"), [("bytes=0-9", (0, 10)), ("bytes=-16", (-16, None)), ("bytes=5-5", (5, 6))]
)
async def test_range_forms(
    sim: Simulator, http: aiohttp.ClientSession, header: str, span: tuple[int, int | None]
) -> None:
    """Closed, suffix and one-byte ranges return exactly those bytes."""
    url = await _video_url(http, sim)
    async with http.get(url) as resp:
        whole = await resp.read()
    async with http.get(url, headers={"Range": header}) as resp:
        assert resp.status == 206
        assert await resp.read() == whole[span[0] : span[1]]


async def test_unsatisfiable_range_is_416(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A range starting past the end gets 416 with Content-Range bytes */size."""
    url = await _video_url(http, sim)
    async with http.get(url, headers={"Range": "bytes=999999-"}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"].startswith("bytes */")


async def test_if_range_mismatch_sends_whole_file(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A Range with a stale If-Range ETag gets the whole file (200)."""
    url = await _video_url(http, sim)
    async with http.get(url, headers={"Range": "bytes=10-", "If-Range": '"stale"'}) as resp:
        assert resp.status == 200


async def test_etag_revalidation(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """If-None-Match with the current ETag gets 304."""
    url = await _video_url(http, sim)
    async with http.get(url) as resp:
        etag = resp.headers["ETag"]
    async with http.get(url, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304


async def test_head_gives_length_without_body(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """HEAD reports Content-Length and sends no body."""
    url = await _video_url(http, sim)
    async with http.head(url) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) > 2048
        assert await resp.read() == b""


async def test_expired_url_is_refused(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """After expires_at (simulated) the URL answers 403 url_expired."""
    task_id = await create(http, sim, "apimart")
    data = (await wait_status(http, sim, "apimart", task_id))["data"]
    url = data["result"]["videos"][0]["url"][0]
    assert data["result"]["videos"][0]["expires_at"] == data["completed"] + 86400
    sim.advance(86400 + 10)
    async with http.get(url) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "url_expired"


@pytest.mark.parametrize("sim_options", [{"url_ttl": 100}])
async def test_url_ttl_sets_expiry(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """url_ttl decides expires_at."""
    task_id = await create(http, sim, "apimart")
    data = (await wait_status(http, sim, "apimart", task_id))["data"]
    assert data["result"]["videos"][0]["expires_at"] == data["completed"] + 100


async def test_unknown_file_is_404(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A file of an unknown or unfinished task is 404."""
    task_id = await create(http, sim, "apimart")
    async with http.get(sim.file_url(task_id)) as resp:
        assert resp.status == 404


async def test_truncate_marker_cuts_download(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """[[fault:truncate-download]] promises the full length, sends half, then closes."""
    url = await _video_url(http, sim, markers="[[fault:truncate-download]]")
    async with http.get(url) as resp:
        task_id = url.split("/")[-2]
        assert int(resp.headers["Content-Length"]) == len(video_bytes(f"{task_id}/0"))
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    async with http.get(url) as resp:
        assert resp.status == 200 and len(await resp.read()) == int(resp.headers["Content-Length"])


async def test_truncate_probability(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """truncate_download_rate=1 truncates ranged downloads too."""
    url = await _video_url(http, sim)
    sim.faults.truncate_download_rate = 1.0
    async with http.get(url, headers={"Range": "bytes=0-"}) as resp:
        assert resp.status == 206
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
