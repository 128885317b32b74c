"""Result-file serving: ``GET /files/{task_id}/{index}.mp4``, the URL a completed task links to.

`FileServer.handle` serves a completed task's video (from ``_media``) the way a CDN does: a
strong ``ETag`` with ``If-None-Match`` (304), single byte ranges with ``If-Range`` (206, or 416
when unsatisfiable), 404 for a task that is unknown or has not completed, and 403
``url_expired`` once the task's URL has expired in simulated time. A ``truncate-download``
fault sends the full ``Content-Length``, then half the bytes, then closes the connection. No
API key is needed.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from ._faults import RequestFaults, draw_faults
from ._media import video_bytes
from ._state import SimState


class FileServer:
    """The result-file handler, on the simulator's shared state."""

    def __init__(self, state: SimState) -> None:
        self._state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /files/{task_id}/{index}.mp4``."""
        state = self._state
        state.stats.downloads += 1
        task = state.store.get(request.match_info["task_id"])
        index = int(request.match_info["index"])
        if task is None or task.status != "completed" or index != 0:
            return web.json_response(
                {"error": {"code": "not_found", "message": "No such file"}}, status=404
            )
        assert task.expires_at is not None
        if state.clock.now() > task.expires_at:
            return web.json_response(
                {"error": {"code": "url_expired", "message": "This result URL has expired"}},
                status=403,
            )
        data = video_bytes(f"{task.id}/{index}")
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
        if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        status, part = 200, data
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range == etag):
            try:
                span = _parse_range(range_header, len(data))
            except ValueError:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return web.Response(status=416, headers=headers)
            if span is not None:
                start, end = span
                status, part = 206, data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        faults = RequestFaults()
        draw_faults(state, faults, "download", task.id, task.markers.for_stage("download"))
        if not faults.truncate or request.method == "HEAD":
            return web.Response(status=status, body=part, headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(part)
        await response.prepare(request)
        await response.write(part[: len(part) // 2])
        if request.transport is not None:
            request.transport.close()
        return response


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` of a single ``bytes=`` range.

    Returns None for what this server does not handle (multiple ranges, other units, nonsense):
    the whole file is sent, as RFC 9110 allows. Raises ValueError if unsatisfiable (416).
    """
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None
    if not first:
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    if start >= size or end < start:
        raise ValueError("range outside the file")
    return start, end
