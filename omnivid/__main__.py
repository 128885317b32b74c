"""``python -m omnivid``: the ``omnivid`` command line (see :mod:`omnivid.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
