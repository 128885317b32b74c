"""Feeding the window: pulling jobs from the input only when there is room, matching each with
its journal entry (or, with a shared journal, claiming it: :mod:`.shared`), and handing it to a
slot (submit or resume), to its outcome at once, or to the wait for another worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Hashable, Iterator
from typing import Any

from ..._aio import clock as _clock
from ..._models import VideoRequest
from ...errors import ValidationError
from .._job import Job
from .shared import Sharing
from .state import _END

log = logging.getLogger("omnivid")

__all__ = ["Feeding"]


class Feeding(Sharing):
    """Pulls jobs from the input into the window."""

    async def _feed(self, iterator: Iterator[Any] | AsyncIterator[Any]) -> None:
        index = 0
        window = self.window
        while True:
            if not window.try_acquire():
                await window.acquire()
            try:
                if isinstance(iterator, AsyncIterator):
                    item = await anext(iterator, _END)
                else:
                    item = next(iterator, _END)
            except Exception as exc:
                window.release()
                self.failure = exc
                log.error("the batch input raised %s; no more jobs are taken", type(exc).__name__)
                return
            if item is _END:
                window.release()
                return
            job = self._make_job(item, index)
            index += 1
            if job is None:
                window.release()
                return
            self._counts["jobs"] += 1
            self._live[job.serial] = job
            if self._journal.shared:  # claimed: held by this worker, or by another one
                await self._claim(job)
            else:
                match, found = self._journal.match(job)
                await self._route(job, match, found)

    def _make_job(self, item: Any, index: int) -> Job | None:
        key: Hashable
        if isinstance(item, VideoRequest):
            key, request = index, item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], VideoRequest):
            key, request = item
        else:
            self.failure = ValidationError(
                f"requests[{index}]", item, "expected a VideoRequest or a (key, VideoRequest) pair"
            )
            return None
        job = Job(next(self._serial), key, request, _clock.now())
        spec = self.provider.models.get(request.model)
        if spec is not None:
            job.typical = spec.typical_seconds
        return job
