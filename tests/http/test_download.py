"""download(): streamed to NAME.part, renamed when whole, resumed with Range; idempotent (a
file saved whole is returned again), never overwriting another file unless asked."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wirehelp import Recorder, Reply, Scripted

import omnivid
from omnivid import errors
from omnivid._http.download import download_task, sidecar_path
from omnivid.testing import Simulator, video_bytes

GEMINI = "gemini-omni-flash-preview"
R2V = "gemini-omni-flash-reference-to-video"
MakeClient = Callable[..., omnivid.AsyncClient]


def file_gets(recorder: Recorder) -> list[dict[str, str]]:
    """Headers of every result-file request the session sent."""
    return [s.headers for s in recorder.sent if "/files/" in s.url]


async def finished(client: omnivid.AsyncClient, prompt: str = "apple") -> omnivid.Task:
    """A completed gemini task made through ``client``."""
    return await client.generate(omnivid.VideoRequest(model=GEMINI, prompt=prompt))


@pytest.mark.anyio
async def test_download_saves_the_whole_video(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """The video is saved as TASK_ID.mp4 with exactly the served bytes; no .part remains."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        paths = await client.download(task, tmp_path / "out")
    assert paths == [tmp_path / "out" / f"{task.id}.mp4"]
    assert paths[0].read_bytes() == video_bytes(f"{task.id}/0")
    assert sorted((tmp_path / "out").iterdir()) == sorted([paths[0], sidecar_path(paths[0])])
    assert all("Range" not in h for h in file_gets(recorder))


@pytest.mark.anyio
async def test_download_evolink_result_by_task_id(
    evolink: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """download("task id") reads the task, then saves its result."""
    task = await evolink.generate(
        omnivid.VideoRequest(model=R2V, prompt="walk", images=["https://example.com/a.png"])
    )
    (path,) = await evolink.download(task.id, tmp_path)
    assert path.read_bytes() == video_bytes(f"{task.id}/0")


@pytest.mark.anyio
async def test_interrupted_transfer_resumes_with_range(
    sim: Simulator, make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A transfer cut half-way resumes from the bytes on disk with a Range request."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client, "apple [[fault:truncate-download]]")
        (path,) = await client.download(task, tmp_path)
    full = video_bytes(f"{task.id}/0")
    assert path.read_bytes() == full
    first, second = file_gets(recorder)
    assert "Range" not in first
    assert second["Range"] == f"bytes={len(full) // 2}-"
    assert second["If-Range"].startswith('"')
    assert sim.stats.faults["truncate-download"] == 1
    assert [r.status for r in sim.request_log if r.path.startswith("/files/")] == [200, 206]
    assert not path.with_name(path.name + ".part").exists()


@pytest.mark.anyio
async def test_failed_download_keeps_the_part_and_a_rerun_resumes(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """When resumes run out, NAME.part holds what arrived; the next download continues it."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client, "apple [[fault:truncate-download*3]]")
        with pytest.raises(errors.DownloadError, match="a rerun resumes it") as caught:
            await download_task(client.session, task, tmp_path, max_resumes=1)
        assert caught.value.task_id == task.id
        part = tmp_path / f"{task.id}.mp4.part"
        assert 0 < part.stat().st_size < len(video_bytes(f"{task.id}/0"))
        assert not (tmp_path / f"{task.id}.mp4").exists()
        (path,) = await client.download(task, tmp_path)
    assert path.read_bytes() == video_bytes(f"{task.id}/0")
    assert not part.exists()
    assert file_gets(recorder)[-1]["Range"].startswith("bytes=")


@pytest.mark.anyio
async def test_existing_part_file_is_resumed(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A NAME.part left by an earlier run is continued, not fetched again from byte 0."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        full = video_bytes(f"{task.id}/0")
        (tmp_path / f"{task.id}.mp4.part").write_bytes(full[:1000])
        (path,) = await client.download(task, tmp_path)
    assert path.read_bytes() == full
    assert file_gets(recorder)[0]["Range"] == "bytes=1000-"


@pytest.mark.anyio
async def test_complete_part_file_is_just_renamed(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A NAME.part already holding every byte (server answers 416) is renamed into place."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        full = video_bytes(f"{task.id}/0")
        (tmp_path / f"{task.id}.mp4.part").write_bytes(full)
        (path,) = await client.download(task, tmp_path)
    assert path.read_bytes() == full
    assert len(file_gets(recorder)) == 1


@pytest.mark.anyio
async def test_oversized_part_file_is_discarded(make_client: MakeClient, tmp_path: Path) -> None:
    """A NAME.part longer than the remote file (a stale leftover) is dropped and refetched."""
    async with make_client("apimart") as client:
        task = await finished(client)
        full = video_bytes(f"{task.id}/0")
        (tmp_path / f"{task.id}.mp4.part").write_bytes(b"x" * (len(full) + 10))
        (path,) = await client.download(task, tmp_path)
    assert path.read_bytes() == full


@pytest.mark.anyio
async def test_existing_file_is_not_overwritten(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """Another file at the destination is an error (after one Range probe) unless overwrite."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        target = tmp_path / f"{task.id}.mp4"
        target.write_bytes(b"mine")
        size = len(video_bytes(f"{task.id}/0"))
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(task, tmp_path)
        assert caught.value.args[0] == (
            f"{target} exists and has 4 bytes where the video has {size}; "
            "pass overwrite=True to replace it"
        )
        assert target.read_bytes() == b"mine"
        assert [h["Range"] for h in file_gets(recorder)] == ["bytes=4-"]
        await client.download(task, tmp_path, overwrite=True)
    assert target.read_bytes() == video_bytes(f"{task.id}/0")
    assert sidecar_path(target).exists()


@pytest.mark.anyio
async def test_downloading_again_returns_the_saved_file(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A second download of the same task into the same folder returns the file it saved,
    without a request and without touching it."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        (path,) = await client.download(task, tmp_path)
        stamp = path.stat().st_mtime_ns
        requests = len(file_gets(recorder))
        assert await client.download(task, tmp_path) == [path]
        assert await client.download(task.id, tmp_path) == [path]
    assert len(file_gets(recorder)) == requests
    assert path.stat().st_mtime_ns == stamp
    assert path.read_bytes() == video_bytes(f"{task.id}/0")


@pytest.mark.anyio
async def test_a_copied_file_is_recognised_by_its_hash(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A saved file whose modification time changed (a copy) but whose SHA-256 is the one in
    its sidecar still counts as downloaded."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        (path,) = await client.download(task, tmp_path)
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
        requests = len(file_gets(recorder))
        assert await client.download(task, tmp_path) == [path]
    assert len(file_gets(recorder)) == requests


@pytest.mark.anyio
async def test_a_changed_file_is_not_replaced(make_client: MakeClient, tmp_path: Path) -> None:
    """A saved file edited in place (same size, other bytes) is not the video any more: an
    error unless overwrite=True, which downloads it again."""
    async with make_client("apimart") as client:
        task = await finished(client)
        (path,) = await client.download(task, tmp_path)
        full = path.read_bytes()
        path.write_bytes(bytes(len(full)))
        with pytest.raises(errors.DownloadError, match="SHA-256 differs"):
            await client.download(task, tmp_path)
        assert path.read_bytes() == bytes(len(full))
        path.write_bytes(full[:-1])
        with pytest.raises(errors.DownloadError, match=f"has {len(full) - 1} bytes"):
            await client.download(task, tmp_path)
        assert await client.download(task, tmp_path, overwrite=True) == [path]
        assert path.read_bytes() == full
        assert await client.download(task, tmp_path) == [path]


@pytest.mark.anyio
async def test_a_whole_file_without_sidecar_is_checked_on_the_server(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A complete file saved without a sidecar is recognised by one Range request past its end
    (416, same size), gets a sidecar, and later downloads need no request."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        full = video_bytes(f"{task.id}/0")
        path = tmp_path / f"{task.id}.mp4"
        path.write_bytes(full)
        assert await client.download(task, tmp_path) == [path]
        assert [h["Range"] for h in file_gets(recorder)] == [f"bytes={len(full)}-"]
        assert sidecar_path(path).exists()
        assert await client.download(task, tmp_path) == [path]
    assert len(file_gets(recorder)) == 1
    assert path.read_bytes() == full


@pytest.mark.anyio
async def test_a_file_that_cannot_be_checked_is_left_alone(
    sim: Simulator, apimart: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """Without a sidecar and with the URL expired, an existing file is kept and reported."""
    task = await finished(apimart)
    path = tmp_path / f"{task.id}.mp4"
    path.write_bytes(video_bytes(f"{task.id}/0"))
    sim.advance(sim.config.url_ttl + 60)
    with pytest.raises(errors.DownloadError, match=r"cannot be checked .*HTTP 403"):
        await apimart.download(task, tmp_path)
    assert path.read_bytes() == video_bytes(f"{task.id}/0")
    assert not sidecar_path(path).exists()


@pytest.mark.anyio
async def test_a_finished_part_with_its_sidecar_is_renamed(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """A run stopped between writing the sidecar and renaming the .part (the sidecar is
    written first) is completed by the next download: the .part is checked and renamed."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        (path,) = await client.download(task, tmp_path)
        part = path.with_name(path.name + ".part")
        os.replace(path, part)
        (again,) = await client.download(task, tmp_path)
    assert again == path and not part.exists()
    assert path.read_bytes() == video_bytes(f"{task.id}/0")
    assert file_gets(recorder)[-1]["Range"] == f"bytes={len(path.read_bytes())}-"


@pytest.mark.anyio
async def test_unfinished_task_has_nothing_to_download(
    apimart: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """Downloading a task without videos is a DownloadError naming its status."""
    task = await apimart.submit(omnivid.VideoRequest(model=GEMINI, prompt="a [[duration=999]]"))
    with pytest.raises(errors.DownloadError, match="no videos to download"):
        await apimart.download(task, tmp_path)


@pytest.mark.anyio
async def test_expired_url_is_reported(
    sim: Simulator, apimart: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """A result URL past its lifetime gives a DownloadError saying it expired; no file left."""
    task = await finished(apimart)
    sim.advance(sim.config.url_ttl + 60)
    with pytest.raises(errors.DownloadError, match="expired"):
        await apimart.download(task, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_the_api_key_is_not_sent_to_result_urls(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """API calls carry the Bearer key; requests for the (CDN) result file do not."""
    async with make_client("apimart", session=recorder.session) as client:
        task = await finished(client)
        await client.download(task, tmp_path)
    api = [s for s in recorder.sent if "/v1/" in s.url]
    assert api and all(s.headers["Authorization"].startswith("Bearer ") for s in api)
    assert file_gets(recorder) and all("Authorization" not in h for h in file_gets(recorder))


@pytest.mark.anyio
async def test_invalid_result_url_is_a_download_error(
    apimart: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """A result URL aiohttp cannot use gives DownloadError, not a raw aiohttp exception."""
    task = omnivid.Task(
        id="t",
        provider="apimart",
        status=omnivid.TaskStatus.COMPLETED,
        videos=(omnivid.Video("not a url"),),
    )
    with pytest.raises(errors.DownloadError, match="cannot download"):
        await apimart.download(task, tmp_path)


@pytest.mark.anyio
async def test_an_expired_url_is_a_typed_error_with_the_task_id(
    sim: Simulator, apimart: omnivid.AsyncClient, tmp_path: Path
) -> None:
    """The simulator's 403 ``url_expired`` is a DownloadExpiredError naming the task, the URL
    and the status (still a DownloadError); no file is left behind."""
    task = await finished(apimart)
    sim.advance(sim.config.url_ttl + 60)
    with pytest.raises(errors.DownloadExpiredError) as caught:
        await apimart.download(task, tmp_path)
    err = caught.value
    assert isinstance(err, errors.DownloadError)
    assert (err.task_id, err.url, err.status) == (task.id, task.video_urls[0], 403)
    assert err.expires_at == task.videos[0].expires_at
    assert "(the URL has expired)" in str(err)
    assert list(tmp_path.iterdir()) == []


def cdn_task(url: str, expires_in: float | None) -> omnivid.Task:
    """A completed task whose one video is at ``url``, expiring ``expires_in`` seconds from
    now (None: no lifetime given)."""
    expires = None if expires_in is None else datetime.now(UTC) + timedelta(seconds=expires_in)
    return omnivid.Task(
        id="task_cdn",
        provider="apimart",
        status=omnivid.TaskStatus.COMPLETED,
        videos=(omnivid.Video(url=url, expires_at=expires),),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "expires_in", "expired"),
    [
        (410, "", 3600.0, True),  # Gone: always
        (403, "", None, True),  # no lifetime given: a 403 is taken as expiry
        (403, "", -10.0, True),  # the lifetime is over
        (403, "<Message>Request has expired</Message>", 3600.0, True),  # the answer says so
        (403, "<Code>AccessDenied</Code>", 3600.0, False),  # an hour left: another refusal
        (404, "", 3600.0, False),
        (404, "", -10.0, True),  # any 4xx once the lifetime is over
        (500, "", -10.0, False),
    ],
)
async def test_which_answers_mean_an_expired_url(
    scripted: Scripted,
    recorder: Recorder,
    tmp_path: Path,
    status: int,
    body: str,
    expires_in: float | None,
    expired: bool,
) -> None:
    """410, or a 403 unless the lifetime is still well ahead and the answer does not say it
    expired, or any 4xx past the lifetime: DownloadExpiredError; others a plain DownloadError."""
    scripted.queue(Reply(status, body))
    task = cdn_task(f"{scripted.url}/files/x.mp4", expires_in)
    with pytest.raises(errors.DownloadError) as caught:
        await download_task(recorder.session, task, tmp_path)
    assert isinstance(caught.value, errors.DownloadExpiredError) is expired
    assert f"HTTP {status}" in str(caught.value)


@pytest.mark.anyio
async def test_the_sidecar_digest_is_the_files_after_a_resume(
    make_client: MakeClient, recorder: Recorder, tmp_path: Path
) -> None:
    """The SHA-256 the sidecar records (hashed while streaming, or read back after a resume)
    is the saved file's."""
    async with make_client("apimart", session=recorder.session) as client:
        whole = await finished(client, "pear")
        cut = await finished(client, "plum [[fault:truncate-download]]")
        paths = [*await client.download(whole, tmp_path), *await client.download(cut, tmp_path)]
    for path in paths:
        record = json.loads(sidecar_path(path).read_text())
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
