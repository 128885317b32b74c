"""Task groups that outlive one ``async with`` block: opened in ``__aenter__``, closed in
``__aexit__`` of an object (client, batch, simulator) rather than around a single block.

Still structured: every task started in such a group is cancelled and awaited when the owner
closes it, in the task that opened it.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskGroup

__all__ = ["close_task_group", "open_task_group"]


async def open_task_group() -> TaskGroup:
    """An entered task group; pair it with :func:`close_task_group` in the same task."""
    tg = anyio.create_task_group()
    await tg.__aenter__()
    return tg


async def close_task_group(tg: TaskGroup | None) -> None:
    """Cancel what still runs in ``tg`` and wait for it to finish (None: nothing to do)."""
    if tg is not None:
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)
