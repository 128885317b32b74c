"""After an expired URL the batch reads the task again: a fresh URL (another one, or the same
living longer) is used once; otherwise the typed error ends the job. And the figures the
download queue orders and paces by (``expiry``, ``lifetime``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

import omnivid
from omnivid.cli._saving import expiry, fresher, lifetime, save_fresh
from omnivid.errors import DownloadExpiredError, NotFoundError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def task(url: str = "https://cdn/a.mp4", expires: datetime | None = T0) -> omnivid.Task:
    """A completed task with one video."""
    return omnivid.Task(
        id="t1",
        provider="apimart",
        status=omnivid.TaskStatus.COMPLETED,
        completed_at=T0 - timedelta(hours=24),
        videos=(omnivid.Video(url=url, expires_at=expires),),
    )


class Videos:
    """Saves any URL but those in ``dead``, which answer as expired."""

    def __init__(self, *dead: str) -> None:
        self.dead = set(dead)
        self.tried: list[str] = []

    async def save(self, client: Any, key: str, t: omnivid.Task) -> list[Path]:
        self.tried.append(t.video_urls[0])
        if t.video_urls[0] in self.dead:
            raise DownloadExpiredError(
                "expired", url=t.video_urls[0], status=403, task_id=t.id, provider=t.provider
            )
        return [Path(f"{key}.mp4")]


class Client:
    """``get`` gives ``again`` (or raises it)."""

    def __init__(self, again: omnivid.Task | Exception) -> None:
        self.again = again
        self.gets = 0

    async def get(self, task_id: str) -> omnivid.Task:
        self.gets += 1
        if isinstance(self.again, Exception):
            raise self.again
        return self.again


async def save(videos: Videos, client: Client, t: omnivid.Task) -> list[Path]:
    return await save_fresh(cast(Any, videos), cast(Any, client), "k", t)


@pytest.mark.anyio
async def test_a_fresh_url_is_used_once() -> None:
    """The task read again gives another URL: the video is saved from it."""
    videos, client = Videos("https://cdn/a.mp4"), Client(task("https://cdn/b.mp4"))
    assert await save(videos, client, task()) == [Path("k.mp4")]
    assert videos.tried == ["https://cdn/a.mp4", "https://cdn/b.mp4"] and client.gets == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "again",
    [
        task(),  # the same URL and lifetime: what both providers and the simulator give
        task(expires=T0 - timedelta(hours=1)),  # an earlier expiry is not fresher
        NotFoundError("gone", status=404),  # the task cannot be read
    ],
)
async def test_without_a_fresh_url_the_expired_error_ends_the_job(
    again: omnivid.Task | Exception,
) -> None:
    """No fresh URL: the DownloadExpiredError (task id, URL, status) comes out, after one
    download try and one read."""
    videos, client = Videos("https://cdn/a.mp4"), Client(again)
    with pytest.raises(DownloadExpiredError) as caught:
        await save(videos, client, task())
    assert (caught.value.task_id, caught.value.status) == ("t1", 403)
    assert videos.tried == ["https://cdn/a.mp4"] and client.gets == 1


@pytest.mark.anyio
async def test_a_fresh_url_is_tried_once() -> None:
    """The same URL living longer counts as fresh; it is tried once, and if it has expired
    as well, that is the job's end."""
    fresh = task(expires=T0 + timedelta(hours=1))
    assert fresher(task(), fresh)
    videos, client = Videos("https://cdn/a.mp4"), Client(fresh)
    with pytest.raises(DownloadExpiredError):
        await save(videos, client, task())
    assert videos.tried == ["https://cdn/a.mp4", "https://cdn/a.mp4"] and client.gets == 1


def test_expiry_and_lifetime() -> None:
    """Order by the first URL to expire (without expires_at: completion + 24 h); lifetime is
    from completion, scaled to real seconds (unknown without expires_at)."""
    two = omnivid.Task(
        id="t2",
        provider="evolink",
        completed_at=T0,
        videos=(
            omnivid.Video(url="u1", expires_at=T0 + timedelta(hours=24)),
            omnivid.Video(url="u2", expires_at=T0 + timedelta(hours=12)),
        ),
    )
    assert expiry(two) == (T0 + timedelta(hours=12)).timestamp()
    assert lifetime(two, 1.0) == 12 * 3600
    assert lifetime(two, 0.001) == pytest.approx(43.2)
    no_lifetime = task(expires=None)  # completed at T0 - 24 h: assumed to live 24 hours
    assert expiry(no_lifetime) == T0.timestamp() and lifetime(no_lifetime, 1.0) is None
    assert expiry(omnivid.Task(id="t3", provider="apimart")) is None
