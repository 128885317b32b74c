"""The event loop's clock, read without anyio's per-call backend lookup.

``anyio.current_time()`` finds the running backend (through sniffio) on every call before it
reads the loop's clock; omnivid runs on asyncio only (as aiohttp does), so its hot paths read
the same clock directly. Tests that freeze time for synchronous code patch :func:`now`.
"""

from __future__ import annotations

import asyncio

__all__ = ["now"]


def now() -> float:
    """Seconds on the running event loop's clock: the value ``anyio.current_time()`` gives."""
    return asyncio.get_running_loop().time()
