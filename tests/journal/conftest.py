"""Fixtures for the journal tests (the simulator fixtures come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnivid import Journal


@pytest.fixture
def anyio_backend() -> str:
    """The simulator and aiohttp run on asyncio."""
    return "asyncio"


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Where a test's journal lives."""
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    """An open journal, closed after the test."""
    with Journal.open(journal_path) as j:
        yield j
