"""Helpers for the command-line tests: run ``python -m omnivid`` in a subprocess, and a
simulator in its own process (``python -m omnivid.testing --port 0``) with its HTTP ledger."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import omnivid

REPO = Path(omnivid.__file__).resolve().parent.parent
SIM_TIME_SCALE = 0.002
"""Real seconds per simulated second for the out-of-process simulator and the CLI alike."""

SIM_KEY = "sk-cli-test-secret-9f8e7d"
"""The key the out-of-process simulator accepts; tests check it never leaks."""


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited keys or base URLs, the repo importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith("OMNIVID_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m omnivid ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "omnivid", *args],
        env=cli_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``python -m omnivid ARGS`` without waiting; output is captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "omnivid", *args],
        env=cli_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_jobs(path: Path, lines: Sequence[dict[str, Any] | str]) -> Path:
    """Write a batch file: dicts as JSON lines, strings verbatim."""
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


def read_results(out: Path, *, by_line: bool = True) -> list[dict[str, Any]]:
    """The rows of ``OUT/results.jsonl``, sorted by line (the file lists them as jobs end);
    ``by_line=False``: in file order."""
    text = (out / "results.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return sorted(rows, key=lambda row: row["line"]) if by_line else rows


class SimProcess:
    """A simulator running in its own process; its ledger is read over HTTP."""

    def __init__(
        self, proc: subprocess.Popen[str], urls: dict[str, str], time_scale: float
    ) -> None:
        self.proc = proc
        self.urls = urls
        self.time_scale = time_scale
        self.root = urls["apimart"].rsplit("/", 1)[0]

    def base_url(self, provider: str) -> str:
        """The provider's base URL on this simulator."""
        return self.urls[provider]

    def cli_args(self) -> list[str]:
        """CLI options pointing every provider at this simulator at its time scale."""
        return [
            "--base-url",
            f"apimart={self.urls['apimart']}",
            "--base-url",
            f"evolink={self.urls['evolink']}",
            "--time-scale",
            str(self.time_scale),
        ]

    def env(self) -> dict[str, str]:
        """Environment giving the CLI this simulator's key for both providers."""
        return {"APIMART_API_KEY": SIM_KEY, "EVOLINK_API_KEY": SIM_KEY}

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        with urllib.request.urlopen(f"{self.root}/_sim/stats", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def start_sim(*options: str, time_scale: float = SIM_TIME_SCALE) -> SimProcess:
    """Start ``python -m omnivid.testing --port 0`` and read the base URLs it prints."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omnivid.testing",
            "--port",
            "0",
            "--time-scale",
            str(time_scale),
            "--seed",
            "7",
            "--api-key",
            SIM_KEY,
            "--retry-after-seconds",
            "0.05",
            *options,
        ],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    for line in proc.stdout:
        match = re.match(r"^(apimart|evolink) (http://\S+)$", line.strip())
        if match:
            urls[match[1]] = match[2]
        if line.startswith("api key:"):
            break
    if set(urls) != {"apimart", "evolink"}:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the simulator did not print its URLs (got {urls})")
    return SimProcess(proc, urls, time_scale)


def wait_for_submitted(journal: Path, key: str, proc: subprocess.Popen[str]) -> str:
    """Poll the journal (read-only) until ``key`` has a task id; returns it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists():
            try:
                with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
                    row = db.execute("SELECT task_id FROM jobs WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row and row[0]:
                return str(row[0])
        time.sleep(0.05)
    pytest.fail("the batch never recorded a task id")
