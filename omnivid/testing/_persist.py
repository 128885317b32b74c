"""The simulator's state in a file, so that a simulator started again on it goes on where the
last one stopped, even one killed with SIGKILL (``Simulator(state_file=PATH)``; ``omnivid batch
--simulate`` keeps one in its output folder).

`StateFile` is a SQLite database. It holds every task, one row each, written when the task is
created (before its submit is answered, so a task id a client recorded is always on file) and
again when it ends; and one row each for the simulated time, the random source, how often each
fault marker fired and the port (a restarted simulator listens on it again when it is free, so
the result URLs it handed out still work). The money ledger (held and spent per key) and the
ledger of tasks per request fingerprint are rebuilt from the tasks. The file survives the death
of the process (every write is handed to the OS at once), not a power cut: nothing is synced to
disk.

Time stands still while no simulator runs on the file: a restarted simulator's clock goes on
from the last simulated time written (at every task created or ended, and at least once a real
second), so tasks resume where they were and result URLs do not expire in the meantime. Request
counters (submits, polls, statuses, faults) and the request log start from zero in each process;
callback deliveries in progress when the process died are not resumed.

While a simulator runs on the file it holds it locked: a second one fails at once with a
:class:`~omnivid.errors.ConfigurationError`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigurationError
from ._markers import FaultMarker, Markers
from ._state import SimState, SimTask

__all__ = ["StateFile"]

_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,
                                  task TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CLOCK_EVERY = 1.0  # real seconds between two writes of the clock alone


class StateFile:
    """One simulator's state on disk: `open` it, `load` it into a `SimState`, then `save`
    tasks as they change (`SimState.store.saver`) and `close` it with the simulator."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._state: SimState | None = None
        self._clock_saved = time.monotonic()
        self.port: int | None = None
        """The port the simulator last listened on (read by `load`)."""

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StateFile:
        """Open (or create) the file at ``path`` and lock it for this process."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open simulator state {path}: {exc}") from None
        try:
            # held from the first write until the connection closes (the OS drops it on a kill)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA synchronous = OFF")
            with db:
                db.execute("BEGIN EXCLUSIVE")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
                if row is not None and row[0] != str(_VERSION):
                    raise ConfigurationError(
                        f"simulator state {path} has format {row[0]}, this omnivid reads "
                        f"{_VERSION}: delete it to start a fresh simulator"
                    )
                db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(_VERSION),))
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc):
                raise ConfigurationError(
                    f"simulator state {path} is in use by another simulator"
                ) from None
            raise ConfigurationError(f"cannot use simulator state {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigurationError(
                f"cannot read simulator state {path} ({exc}): delete it to start a fresh simulator"
            ) from None
        except BaseException:
            db.close()
            raise
        return cls(path, db)

    def load(self, state: SimState) -> float | None:
        """Put the tasks, ledgers, random source and marker counts on file into ``state`` (a
        fresh one) and save its changes from now on; returns the simulated time on file (None
        for a new file)."""
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if "rng" in meta:
            version, internal, gauss = json.loads(meta["rng"])
            state.rng.setstate((version, tuple(internal), gauss))
        for stage, scope, text, count in json.loads(meta.get("marker_hits", "[]")):
            state.marker_hits[(stage, scope, text)] = count
        stats = state.stats
        for (text,) in self._db.execute("SELECT task FROM tasks ORDER BY seq"):
            task = _task_from_json(text)
            state.store.load(task)
            stats.tasks.append(task.id)
            fp = task.fingerprint
            stats.tasks_by_fingerprint[fp] = stats.tasks_by_fingerprint.get(fp, 0) + 1
            if task.status is None:
                state.ledger.hold(task.api_key, task.held)
                continue
            cost, credits = task.charged
            state.ledger.settle(task.api_key, 0.0, cost)
            stats.total_cost += cost
            stats.total_credits += credits
            stats.cost_by_key[task.api_key] = stats.cost_by_key.get(task.api_key, 0.0) + cost
        self.attach(state)
        self.port = int(meta["port"]) if "port" in meta else None
        return float(meta["now"]) if "now" in meta else None

    def attach(self, state: SimState) -> None:
        """Save ``state``'s changes from now on."""
        self._state = state
        state.store.saver = self.save

    def save(self, tasks: Sequence[SimTask]) -> None:
        """Write ``tasks`` (new or ended) with the time, random source and marker counts."""
        rows = [(task.id, _task_to_json(task)) for task in tasks]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO tasks (id, task) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET task = excluded.task",
                rows,
            )
            self._write_meta(full=True)

    def save_port(self, port: int) -> None:
        """Write the port the simulator listens on (its result URLs name it)."""
        self.port = port
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('port', ?)", (str(port),))

    def save_clock(self) -> None:
        """Write the simulated time, at most once a real second (the simulator's driver calls
        this as it goes, so that a restart resumes near the time of a kill)."""
        if time.monotonic() - self._clock_saved >= _CLOCK_EVERY:
            with self._db:
                self._db.execute("BEGIN")
                self._write_meta(full=False)

    def close(self) -> None:
        """Write the time and marker counts one last time, and release the file."""
        try:
            if self._state is not None:
                with self._db:
                    self._db.execute("BEGIN")
                    self._write_meta(full=True)
        finally:
            self._db.close()

    def _write_meta(self, *, full: bool) -> None:
        state = self._state
        if state is None:
            return
        values = {"now": repr(state.clock.now())}
        if full:
            values["rng"] = json.dumps(state.rng.getstate())
            values["marker_hits"] = json.dumps(
                [[*hit, count] for hit, count in state.marker_hits.items()]
            )
        self._db.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            values.items(),
        )
        self._clock_saved = time.monotonic()


def _task_to_json(task: SimTask) -> str:
    return json.dumps(attrs.asdict(task), separators=(",", ":"))


def _task_from_json(text: str) -> SimTask:
    data: dict[str, Any] = json.loads(text)
    markers = data.pop("markers")
    faults = tuple(FaultMarker(**fault) for fault in markers.pop("faults"))
    for pair in ("price", "charged"):  # JSON gave a list
        data[pair] = (float(data[pair][0]), float(data[pair][1]))
    return SimTask(**data, markers=Markers(**markers, faults=faults))
