"""``omnivid.cli.main`` called in-process, for what needs no network: usage and input errors,
``--version``, ``models --json``, ``sim --help``."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest
from clitools import write_jobs

from omnivid.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``omnivid ARGV``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required option is one line and exit status 2."""
    code, _, err = run(capsys, "generate", "a fox", "--model", "Omni-Flash-Ext")
    assert code == 2
    assert err.startswith("omnivid: error: the following arguments are required: --out")
    assert err.count("\n") == 1


def test_status_requires_provider(capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` without ``--provider`` is a usage error."""
    code, _, err = run(capsys, "status", "task_x")
    assert code == 2
    assert "--provider" in err


def test_bad_option_value(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed option value names the option and the value."""
    code, _, err = run(capsys, "batch", "jobs.jsonl", "--out", "x", "--max-in-flight", "0")
    assert code == 2
    assert err.startswith("omnivid: error: argument --max-in-flight: 0 must be at least 1")


def test_generate_validation_error_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A rule violation is one ``omnivid: error:`` line naming field, value and rule; exit 2."""
    code, _, err = run(
        capsys, "generate", "a fox", "--model", "Omni-Flash-Ext", "--duration", "7",
        "--out", str(tmp_path), "--simulate",
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("omnivid: error: duration=7: Omni-Flash-Ext accepts 4, 6, 8 or 10")
    assert not any(tmp_path.iterdir())


def test_generate_unknown_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unknown model lists the known ones, in one line."""
    code, _, err = run(capsys, "generate", "x", "--model", "sora-9", "--out", str(tmp_path))
    assert code == 2
    assert err.startswith("omnivid: error: model='sora-9': no provider offers it; known: ")
    assert err.count("\n") == 1


def test_strict_stops_before_running(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--strict`` refuses the whole file when one line is bad: exit 2, nothing created."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"model": "Omni-Flash-Ext", "prompt": "a"}, "[1]"])
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(jobs), "--out", str(out), "--simulate", "--strict")
    assert code == 2
    assert err.splitlines() == [
        f"omnivid: {jobs}: line 2: expected a JSON object, got list",
        f"omnivid: error: 1 bad line(s) in {jobs}; nothing was run (--strict)",
    ]
    assert not out.exists()


def test_missing_jobs_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A batch file that does not exist is a one-line usage error."""
    missing = tmp_path / "nope.jsonl"
    code, _, err = run(capsys, "batch", str(missing), "--out", str(tmp_path), "--simulate")
    assert code == 2
    assert err == f"omnivid: error: cannot read {missing}: no such file\n"


def test_base_url_needs_provider_when_two_in_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ``--base-url`` for a batch over two providers is a usage error."""
    monkeypatch.setenv("APIMART_API_KEY", "k")
    monkeypatch.setenv("EVOLINK_API_KEY", "k")
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"model": "Omni-Flash-Ext", "prompt": "a"},
            {
                "model": "gemini-omni-flash-reference-to-video",
                "prompt": "b",
                "images": ["https://example.com/b.png"],
            },
        ],
    )
    code, _, err = run(
        capsys, "batch", str(jobs), "--out", str(tmp_path / "o"), "--base-url", "http://h:1"
    )
    assert code == 2
    assert "write PROVIDER=URL" in err


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    """``omnivid models --json`` is machine-readable."""
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {(r["provider"], r["model"]) for r in rows} == {
        ("apimart", "gemini-omni-flash-preview"),
        ("apimart", "Omni-Flash-Ext"),
        ("evolink", "gemini-omni-flash-reference-to-video"),
    }


def test_sim_help_delegates(capsys: pytest.CaptureFixture[str]) -> None:
    """``omnivid sim --help`` is the simulator's own help."""
    code, out, _ = run(capsys, "sim", "--help")
    assert code == 0
    assert "usage: omnivid sim" in out
    assert "--time-scale" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the package version."""
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("omnivid 0.")


def test_second_batch_on_same_journal_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """While a batch holds a journal, another run on it is refused before submitting anything."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"model": "Omni-Flash-Ext", "prompt": "a"}])
    out = tmp_path / "out"
    out.mkdir()
    with (out / "journal.sqlite.lock").open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run(capsys, "batch", str(jobs), "--out", str(out), "--simulate")
    assert code == 2
    assert err.startswith("omnivid: error: another omnivid batch is running with the journal")
    assert not (out / "journal.sqlite").exists()
