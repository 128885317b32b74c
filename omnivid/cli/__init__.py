"""The ``omnivid`` command line: ``omnivid --help``."""

from ._main import main

__all__ = ["main"]
