"""The batch engine, one module per responsibility: see :mod:`.engine`."""

from .engine import Engine

__all__ = ["Engine"]
