"""Shared benchmark machinery: the simulator in its own process, timing, tables and JSON.

Every contender talks HTTP over loopback to a simulator started with
``python -m omnivid.testing --port 0 ...`` in a separate process, so the server's CPU time and
memory are never charged to the client being measured. :class:`SimProcess` starts it, reads the
base URLs it prints, reads ``GET /_sim/stats`` and stops it. A benchmark starts a fresh
simulator for each contender run, so counters, rate-limit buckets and task tables never leak
from one contender into the next.

Percentiles use linear interpolation between closest ranks (numpy's default)::

    p(q) = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]),  h = (n - 1) * q
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import attrs
from attrs import define, frozen

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "BenchResult",
    "RequestLog",
    "SimOptions",
    "SimProcess",
    "Table",
    "Target",
    "cpu_seconds",
    "fmt",
    "load_average",
    "machine_info",
    "median",
    "peak_rss_mb",
    "percentile",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_URL = re.compile(r"http://127\.0\.0\.1:\d+/(apimart|evolink)\b")
_KEY = re.compile(r"^api key: (\S+)$", re.MULTILINE)
_START_TIMEOUT = 30.0


# -- the simulator process --------------------------------------------------------------------
@frozen(kw_only=True)
class SimOptions:
    """How to start the simulator (``python -m omnivid.testing --help`` names the flags).

    ``time_scale``: real seconds per simulated second. ``instant``: every task is complete at
    its first poll. ``rps``/``burst``: the per-key server rate limit (real requests/s) and its
    bucket size. ``retry_after``: ``"seconds"``, ``"http-date"`` or ``None`` (429s carry no
    ``Retry-After``); ``retry_after_seconds`` the wait announced. ``estimate_error``: the
    reported ``estimated_time`` is the true duration times ``U(1 - e, 1 + e)``.
    """

    time_scale: float = 1.0
    seed: int = 1
    instant: bool = False
    rps: float | None = None
    burst: float | None = None
    retry_after: str | None = "seconds"
    retry_after_seconds: float | None = None
    estimate_error: float | None = None

    def to_args(self) -> list[str]:
        """Command-line flags for ``python -m omnivid.testing``."""
        args = ["--time-scale", repr(self.time_scale), "--seed", str(self.seed)]
        if self.instant:
            args.append("--instant")
        if self.rps is not None:
            args += ["--rps", repr(self.rps)]
        if self.burst is not None:
            args += ["--burst", repr(self.burst)]
        if self.retry_after is None:
            args += ["--retry-after", "none"]
        elif self.retry_after != "seconds":
            args += ["--retry-after", self.retry_after]
        if self.retry_after_seconds is not None:
            args += ["--retry-after-seconds", repr(self.retry_after_seconds)]
        if self.estimate_error is not None:
            args += ["--estimate-error", repr(self.estimate_error)]
        return args


class SimProcess:
    """The simulator running as a child process on loopback (a context manager).

    Its output goes to temporary files (never a pipe that could fill up and stall it); the
    base URLs are read from what it prints at start-up. The child writes them in append mode
    and this process reads them through its own handle, by path: sharing one file offset with
    the child would let a ``seek(0)`` here make the child overwrite its first lines.
    """

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._proc: subprocess.Popen[bytes] | None = None
        # removed in stop(): it must outlive this method, so no `with`
        self._dir = tempfile.TemporaryDirectory(prefix="omnivid-sim-")
        self._out = Path(self._dir.name) / "stdout"
        self._err = Path(self._dir.name) / "stderr"
        self._urls: dict[str, str] = {}
        self.api_key = "sk-omnivid-bench"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the simulator and wait until it has printed its base URLs."""
        cmd = [
            sys.executable,
            "-m",
            "omnivid.testing",
            "--port",
            "0",
            "--api-key",
            self.api_key,
            *self.options.to_args(),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self._out.open("ab") as out, self._err.open("ab") as err:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            printed = self._read(self._out)
            self._urls = {m.group(1): m.group(0) for m in _URL.finditer(printed)}
            key = _KEY.search(printed)
            if "apimart" in self._urls and "evolink" in self._urls and key:
                self.api_key = key.group(1)
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        status = "exited" if self._proc.poll() is not None else f"no URLs in {_START_TIMEOUT:.0f} s"
        out, err = self._read(self._out)[-1500:], self._read(self._err)[-1500:]
        output = f"stdout: {out!r} stderr: {err!r}"
        self.stop()
        raise RuntimeError(f"the simulator did not start ({' '.join(cmd[1:])}; {status}): {output}")

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""

    def base_url(self, provider: str = "apimart") -> str:
        """The provider's base URL on this simulator (``http://127.0.0.1:PORT/apimart``)."""
        return self._urls[provider]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._urls["apimart"].rsplit("/", 1)[0]

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        if self._proc is None:
            raise RuntimeError("the simulator is not running")
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the simulator process has used so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: what the simulator saw and charged so far."""
        with urllib.request.urlopen(self.root_url + "/_sim/stats", timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL after 5 s) and remove its output files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._dir.cleanup()


@contextmanager
def simulator(options: SimOptions) -> Iterator[SimProcess]:
    """``with simulator(SimOptions(...)) as sim:`` -- a fresh simulator process."""
    with SimProcess(options) as sim:
        yield sim


# -- per-request log via aiohttp tracing ------------------------------------------------------
@define
class RequestLog:
    """Every HTTP exchange a session made: ``(time.monotonic() at the answer, method, status)``.

    ``trace_config()`` plugs it into an ``aiohttp.ClientSession``; it works the same for omnivid
    (given the session) and for the bare-aiohttp contenders. ``body_sent`` maps the text of each
    request body to the (sent, answered) monotonic times of that request, when ``keep_bodies``.
    """

    keep_bodies: bool = False
    records: list[tuple[float, str, int]] = attrs.field(factory=list)
    body_sent: dict[str, tuple[float, float]] = attrs.field(factory=dict)

    def trace_config(self) -> aiohttp.TraceConfig:
        """An ``aiohttp.TraceConfig`` recording into this log."""
        config = aiohttp.TraceConfig()
        config.on_request_chunk_sent.append(self._on_chunk)
        config.on_request_end.append(self._on_end)
        config.on_request_exception.append(self._on_exception)
        return config

    async def _on_chunk(
        self, _: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        if self.keep_bodies and params.chunk:
            ctx.body = params.chunk.decode("utf-8", "replace")
            ctx.sent = time.monotonic()

    async def _on_end(
        self, _: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        now = time.monotonic()
        self.records.append((now, params.method, params.response.status))
        body = getattr(ctx, "body", None)
        if body is not None:
            self.body_sent[body] = (ctx.sent, now)

    async def _on_exception(
        self, _: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        self.records.append((time.monotonic(), params.method, 0))

    def window(self, start: float, end: float) -> list[int]:
        """Statuses of the answers received in ``[start, end)``."""
        return [status for t, _, status in self.records if start <= t < end]


# -- numbers ----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    h = (len(data) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(data) - 1)
    return data[low] + (h - low) * (data[high] - data[low])


def median(values: Sequence[float]) -> float:
    """The median (``percentile(values, 0.5)``)."""
    return percentile(values, 0.5)


def cpu_seconds() -> float:
    """CPU time (user + system) used by this process so far."""
    return time.process_time()


def peak_rss_mb() -> float:
    """Peak resident set size of this process since its ``exec``, in MB (10^6 bytes).

    Read from ``VmHWM`` in ``/proc/self/status``. ``getrusage().ru_maxrss`` would be wrong for a
    child process: Linux carries the parent's peak into it across ``fork``/``exec``, so every
    child of a big parent would report at least the parent's size. Falls back to
    ``ru_maxrss`` where ``/proc`` is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    return os.getloadavg()[0]


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table: fixed ``digits``, thousands separators, ``-`` for NaN."""
    if value != value:
        return "-"
    return f"{value:,.{digits}f}"


# -- results ----------------------------------------------------------------------------------
@define
class Table:
    """One markdown table."""

    headers: list[str]
    rows: list[list[str]] = attrs.field(factory=list)

    def add(self, *cells: object) -> None:
        """Append a row (cells converted with ``str``)."""
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """The table in GitHub markdown."""
        lines = ["| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@frozen
class Target:
    """A target from the issue, what was measured, and whether it was met."""

    goal: str
    measured: str
    met: bool


@define
class BenchResult:
    """What one benchmark measured: parameters, tables, targets, notes and raw numbers."""

    key: str
    title: str
    params: dict[str, Any] = attrs.field(factory=dict)
    tables: list[Table] = attrs.field(factory=list)
    targets: list[Target] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    data: dict[str, Any] = attrs.field(factory=dict)
    seconds: float = 0.0
    load_before: float = 0.0

    def markdown(self) -> str:
        """Title, parameters, tables, targets and notes as markdown."""
        out = [f"### {self.key.upper()}: {self.title}", ""]
        if self.params:
            out.append(", ".join(f"{k}={v}" for k, v in self.params.items()))
            out.append("")
        for table in self.tables:
            out += [table.markdown(), ""]
        if self.targets:
            targets = Table(["target", "measured", "met"])
            for target in self.targets:
                targets.add(target.goal, target.measured, "yes" if target.met else "**no**")
            out += [targets.markdown(), ""]
        out += [f"- {note}" for note in self.notes]
        out.append(
            f"\n_{self.key} took {self.seconds:.0f} s; 1-minute load average before it: "
            f"{self.load_before:.2f}_"
        )
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


def machine_info() -> dict[str, Any]:
    """The machine the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError):
        memory = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_json(path: Path, results: Sequence[BenchResult], *, quick: bool) -> None:
    """Write ``results`` to ``path``, keeping earlier entries of benchmarks not run now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = {}
    benches = dict(existing.get("benchmarks", {}))
    for result in results:
        benches[result.key] = result.to_json()
    data = {"machine": machine_info(), "quick": quick, "benchmarks": benches}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
