"""Journal.open creates the folder it is given a path in, as the README's map example needs."""

from __future__ import annotations

from pathlib import Path

import pytest

import omnivid
from omnivid.errors import ConfigurationError
from omnivid.journal import Journal


def test_open_creates_missing_folders(tmp_path: Path) -> None:
    """A journal path in folders that do not exist yet is opened; the folders are made."""
    path = tmp_path / "runs" / "2024" / "clips.sqlite"
    with Journal.open(path) as journal:
        assert journal.path == path
    assert path.is_file()


def test_a_folder_that_cannot_be_made_is_a_configuration_error(tmp_path: Path) -> None:
    """When the folder's place is taken by a file, the error names the journal."""
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ConfigurationError, match="cannot open the journal"):
        Journal.open(tmp_path / "runs" / "clips.sqlite")


@pytest.mark.anyio
async def test_map_with_a_journal_in_a_new_folder(
    apimart: omnivid.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """client.map(journal="runs/clips.sqlite") runs from a folder without runs/."""
    monkeypatch.chdir(tmp_path)
    request = omnivid.VideoRequest(model="gemini-omni-flash-preview", prompt="a fox")
    async with apimart.map([("fox", request)], journal="runs/clips.sqlite") as outcomes:
        results = [outcome async for outcome in outcomes]
    assert [(o.key, o.ok) for o in results] == [("fox", True)]
    assert (tmp_path / "runs" / "clips.sqlite").is_file()
