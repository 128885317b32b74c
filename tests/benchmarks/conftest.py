"""The benchmarks package lives at the repository root, beside ``omnivid``: make it importable
however pytest was started (``pytest`` does not put the working directory on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
