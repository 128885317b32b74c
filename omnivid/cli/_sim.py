"""``omnivid sim``: the provider simulator's own command line (``python -m omnivid.testing``)."""

from __future__ import annotations

from ..testing.__main__ import main as sim_main
from ._common import EXIT_USAGE

__all__ = ["sim"]


def sim(argv: list[str]) -> int:
    """Run the simulator with ``argv`` (everything after ``sim``); returns the exit status."""
    try:
        return sim_main(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
