"""Run one README block as a script, the way a user who pasted it into a file would.

``python _run_block.py BLOCK.py``. The only difference from ``python BLOCK.py``: a client built
without ``time_scale=`` gets ``OMNIVID_TEST_TIME_SCALE``, the test simulator's clock, so that
the block's polls wait milliseconds rather than the seconds a real provider asks for. omnivid
reads no such variable itself.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
from typing import Any

import omnivid

_SCALE = float(os.environ["OMNIVID_TEST_TIME_SCALE"])
_init = omnivid.AsyncClient.__init__


@functools.wraps(_init)
def _scaled_init(self: omnivid.AsyncClient, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("time_scale", _SCALE)
    _init(self, *args, **kwargs)


omnivid.AsyncClient.__init__ = _scaled_init  # type: ignore[method-assign]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
