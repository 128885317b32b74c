"""examples/quickstart.py runs end to end on the simulator, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "quickstart.py"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the quick start with the repository importable and a fast simulator clock."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMNIVID_TIME_SCALE"] = "0.001"
    env.pop("APIMART_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_quickstart_simulated_generate_and_download(tmp_path: Path) -> None:
    """--simulate generates one Omni-Flash-Ext video and saves an MP4 under --out."""
    result = run("--simulate", "--out", str(tmp_path / "videos"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "submitted task_" in result.stdout
    assert "completed  100%" in result.stdout
    (saved,) = (tmp_path / "videos").glob("task_*.mp4")
    assert f"saved {saved}" in result.stdout
    assert saved.read_bytes()[4:8] == b"ftyp"


def test_quickstart_reports_errors_cleanly(tmp_path: Path) -> None:
    """A bad request ends with exit status 1 and a one-line error, not a traceback."""
    result = run("--simulate", "--duration", "7", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: duration=7: Omni-Flash-Ext accepts 4, 6, 8 or 10")
    assert "Traceback" not in result.stderr
