"""omnivid: generate short videos through APIMart and EvoLink, one at a time or by the thousand.

Quick start::

    import omnivid

    async with omnivid.AsyncClient("apimart") as client:
        task = await client.generate(
            omnivid.VideoRequest(model="Omni-Flash-Ext", prompt="a fox in the snow", duration=6)
        )
        paths = await client.download(task, "videos/")

Errors live in :mod:`omnivid.errors`; providers and models in :mod:`omnivid.providers`; the
simulator and pytest plugin in :mod:`omnivid.testing`.
"""

from . import errors, providers
from ._client import AsyncClient
from ._http.retry import RetryPolicy
from ._http.transport import Timeouts
from ._models import Task, TaskError, TaskStatus, Video, VideoRequest
from ._polling import PollPolicy
from .batch._handles import Batch, MapRun
from .batch._multi import MultiMapRun, map_many
from .batch._outcome import BatchStats, Event, Outcome
from .batch._policy import ResubmitPolicy
from .journal import Journal, JournalEntry

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Batch",
    "BatchStats",
    "Event",
    "Journal",
    "JournalEntry",
    "MapRun",
    "MultiMapRun",
    "Outcome",
    "PollPolicy",
    "ResubmitPolicy",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskStatus",
    "Timeouts",
    "Video",
    "VideoRequest",
    "__version__",
    "errors",
    "map_many",
    "providers",
]
