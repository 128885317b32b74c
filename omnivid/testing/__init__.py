"""A faithful local simulator of the APIMart and EvoLink video APIs, for tests and benchmarks.

Start one with ``async with Simulator(time_scale=0.001) as sim:`` (asyncio only), or in its own
process with ``omnivid sim --port 8080`` / ``python -m omnivid.testing``. Under pytest, the
``omnivid_sim`` fixture gives a running simulator (see ``omnivid.testing.pytest_plugin``).

URL layout (one server, both providers)::

    POST {sim.base_url("apimart")}/v1/videos/generations   # base_url = http://127.0.0.1:PORT/apimart
    GET  {sim.base_url("apimart")}/v1/tasks/{task_id}
    POST {sim.base_url("evolink")}/v1/videos/generations   # base_url = http://127.0.0.1:PORT/evolink
    GET  {sim.base_url("evolink")}/v1/tasks/{task_id}
    GET  http://127.0.0.1:PORT/files/{task_id}/0.mp4        # result video (Range, ETag, expiry)
    GET  /_sim/stats   POST /_sim/config   POST /_sim/reset   POST /_sim/advance {"seconds": n}

Useful members: ``sim.base_url(provider)``, ``sim.api_key`` (always accepted),
``sim.client(provider)`` (an unopened ``omnivid.AsyncClient`` on the simulator), ``sim.stats``
(`SimStats`: submits, polls, 429s, tasks per request fingerprint, cost, in-flight high-water
marks, callbacks, ...), ``sim.request_log`` (`RequestRecord` tuples), ``sim.reset_stats()``,
``sim.faults`` and ``sim.config`` (assignable at run time) or ``sim.configure(**settings)``,
``sim.advance(seconds)``, ``sim.task_status(id)``, ``sim.in_flight(key)``, ``sim.balance(key)``,
``await sim.wait_idle()``.

Every API response carries an ``X-Request-Id`` header. Models: APIMart
``gemini-omni-flash-preview`` and ``Omni-Flash-Ext``; EvoLink
``gemini-omni-flash-reference-to-video``.

Time: task times (durations, ``estimated_time``, ``created``, ``completed``, ``expires_at``,
``url_ttl``, callback retry delays) are *simulated* seconds; ``time_scale`` is real seconds per
simulated second, so with ``time_scale=0.001`` a 240 s task takes 0.24 s and timestamps in the
bodies advance 1000 times as fast as the wall clock. A client must scale its poll interval the
same way. HTTP-level times are *real* seconds: ``rps``, ``slow_seconds`` and ``Retry-After``
(``retry_after_seconds``, which may be fractional, e.g. ``Retry-After: 0.05``; the HTTP-date
form is rounded up to whole seconds of the real clock). ``sim.advance(s)`` jumps simulated time.

Prompt markers (deterministic behaviour; write them anywhere in ``prompt``)::

    [[fail:quota]]        task fails: upstream quota exhausted
    [[fail:moderation]]   task fails: content moderation
    [[fail:timeout]]      task fails: upstream timeout
    [[cancel]]            task ends as "cancelled"
    [[duration=30]]       the task takes exactly 30 simulated seconds
    [[fault:KIND[=SECONDS][@submit|@poll|@download][*TIMES]]]

Fault KINDs: ``500`` (documented 500 body), ``502``/``503``/``504`` (an nginx HTML page), ``429``
(documented 429 body + ``Retry-After``), ``reset`` (TCP reset, nothing processed),
``lost-response`` (submit only: the task *is* created, then the connection closes unanswered),
``slow=SECONDS`` (answer delayed by real seconds; a submit is processed first),
``malformed`` (the JSON body is cut in half; a submit's task is created),
``truncate-download`` (download only: full Content-Length, half the bytes, then close).
A submit fault fires ``TIMES`` times (default 1) per request fingerprint, so an identical retry
gets through; ``@poll`` faults fire on the task's first ``TIMES`` polls, ``@download`` ones on
its first downloads. Examples: ``[[fault:500]]``, ``[[fault:429@poll*3]]``, ``[[fault:slow=0.2]]``.

Failure causes (APIMart ``error.code`` is always ``"task_failed"``, ``"task_cancelled"`` when
cancelled; classify APIMart failures by keyword in ``error.message``):

=============  ===================================================  ============================
cause          APIMart ``error.message``                            EvoLink ``error.code``
=============  ===================================================  ============================
quota          upstream quota temporarily exhausted, please ...     ``upstream_quota_exhausted``
moderation     content moderation rejected the prompt or ...        ``content_moderation``
timeout        upstream timeout while generating the video          ``upstream_timeout``
cancel         task cancelled (status ``cancelled``)                ``task_cancelled``
=============  ===================================================  ============================

Failed and cancelled tasks cost 0. Completed tasks cost, per task: ``Omni-Flash-Ext`` 0.4 /
4 credits, ``gemini-omni-flash-preview`` 1.0 / 10 credits; EvoLink reserves 10.234 credits per
requested second (``auto`` = 10) and charges for the actual video length at 0.01 per credit.

APIMart's task status takes ``?language=zh|en|ko|ja``: that answer's messages (its error, a
failed task's ``error.message``) come in that language; another value is a 400. Without it,
errors use ``SimConfig.language`` and failure messages are the English ones above.

Errors not spelled out by the documents: unknown task -> 404 (APIMart ``not_found_error``,
EvoLink ``task_not_found``); APIMart 403 ``permission_error``; APIMart 500 ``server_error``;
an expired result URL -> 403 ``{"error": {"code": "url_expired", ...}}``.
"""

from ._config import (
    APIMART,
    EVOLINK,
    EVOLINK_MODEL,
    GEMINI_PREVIEW,
    OMNI_FLASH_EXT,
    FaultConfig,
    SimConfig,
)
from ._media import video_bytes
from ._simulator import Simulator
from ._stats import CallbackAttempt, RequestRecord, SimStats, fingerprint
from ._wire import FAILURES

__all__ = [
    "APIMART",
    "EVOLINK",
    "EVOLINK_MODEL",
    "FAILURES",
    "GEMINI_PREVIEW",
    "OMNI_FLASH_EXT",
    "CallbackAttempt",
    "FaultConfig",
    "RequestRecord",
    "SimConfig",
    "SimStats",
    "Simulator",
    "fingerprint",
    "video_bytes",
]
