"""``python -m omnivid.testing``: starts, prints its base URLs, serves, stops cleanly on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from omnivid.testing.__main__ import main


def test_module_serves_and_exits_cleanly_on_sigint() -> None:
    """The process prints one line per provider and the key, answers, then exits 0 on Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnivid.testing", "--port", "0", "--instant", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        urls = dict(line.split(" ", 1) for line in lines[:2])
        assert set(urls) == {"apimart", "evolink"}
        assert urls["apimart"].startswith("http://127.0.0.1:")
        assert lines[2] == "api key: sk-omnivid-sim"
        request = urllib.request.Request(
            f"{urls['apimart']}/v1/videos/generations",
            data=json.dumps({"model": "Omni-Flash-Ext", "prompt": "cli"}).encode(),
            headers={"Authorization": "Bearer sk-omnivid-sim"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.load(resp)["data"][0]["status"] == "submitted"
        root = urls["apimart"].rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{root}/_sim/stats", timeout=5) as resp:
            assert json.load(resp)["submits"] == 1
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in stderr


def test_sigterm_also_exits_cleanly() -> None:
    """SIGTERM stops the simulator with exit status 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnivid.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in stderr


@pytest.mark.parametrize("argv", [["--failure-rate", "3"], ["--slow-rate", "-1"], ["--port", "-5"]])
def test_bad_settings_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Invalid settings are reported in one line, without a traceback, before serving."""
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("omnivid sim: ")
