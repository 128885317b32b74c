"""``omnivid generate``, ``status``, ``download``, ``models`` and ``sim`` as subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import SIM_KEY, SimProcess, cli_env, run_cli

EXT_ARGS = ["--model", "Omni-Flash-Ext", "--duration", "4"]


def generate_on(sim: SimProcess, out: Path, prompt: str = "a fox in the snow") -> str:
    """Generate one video on the out-of-process simulator; returns its task id."""
    done = run_cli("generate", prompt, *EXT_ARGS, "--out", str(out), *sim.cli_args(), env=sim.env())
    assert done.returncode == 0, done.stderr
    match = re.search(r"submitted apimart task (\S+)", done.stderr)
    assert match, done.stderr
    return match[1]


@pytest.fixture(scope="module")
def finished_task(sim_process: SimProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The id of a task generated (and completed) on the module's simulator."""
    return generate_on(sim_process, tmp_path_factory.mktemp("gen"))


def test_models_lists_every_model_with_rules() -> None:
    """``omnivid models`` prints each provider's models and their rules."""
    done = run_cli("models")
    assert done.returncode == 0
    for model in (
        "gemini-omni-flash-preview",
        "Omni-Flash-Ext",
        "gemini-omni-flash-reference-to-video",
    ):
        assert model in done.stdout
    assert "duration 4 | 6 | 8 | 10" in done.stdout
    assert "APIMART_API_KEY" in done.stdout


def test_generate_simulate_downloads_video(tmp_path: Path) -> None:
    """``generate --simulate`` submits, follows progress and saves a playable MP4."""
    done = run_cli(
        "generate",
        "a fox",
        *EXT_ARGS,
        "--out",
        str(tmp_path),
        "--simulate",
        "--sim-time-scale",
        "0.002",
    )
    assert done.returncode == 0, done.stderr
    (path,) = done.stdout.split()
    video = Path(path)
    assert video.parent == tmp_path
    assert video.read_bytes()[4:8] == b"ftyp"
    assert "completed" in done.stderr


def test_generate_failed_task_exits_1(tmp_path: Path) -> None:
    """A task that ends failed is reported with its reason and exit status 1."""
    done = run_cli(
        "generate",
        "a fox [[fail:moderation]]",
        *EXT_ARGS,
        "--out",
        str(tmp_path),
        "--simulate",
        "--sim-time-scale",
        "0.002",
    )
    assert done.returncode == 1
    assert re.search(r"omnivid: task \S+ failed: \w", done.stderr)
    assert "task_failed" not in done.stderr  # "failed" is said once
    assert "Traceback" not in done.stderr


def test_generate_missing_key(tmp_path: Path) -> None:
    """Without a key: one line naming the variable and --simulate, exit 2, no traceback."""
    done = run_cli("generate", "a fox", *EXT_ARGS, "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (
        "omnivid: error: no API key for apimart: set APIMART_API_KEY "
        "(or use --simulate to try omnivid without one)\n"
    )


def test_status_text_and_json(sim_process: SimProcess, finished_task: str) -> None:
    """``status`` shows a finished task, as text and as JSON."""
    task_id = finished_task
    args = ["status", task_id, "--provider", "apimart", *sim_process.cli_args()]
    text = run_cli(*args, env=sim_process.env())
    assert text.returncode == 0, text.stderr
    assert re.search(r"status\s+completed \(100%\)", text.stdout)
    assert re.search(r"cost\s+0.40 \(4 credits\)", text.stdout)
    assert "model" not in text.stdout and "?" not in text.stdout  # APIMart's task has no model
    data = json.loads(run_cli(*args, "--json", env=sim_process.env()).stdout)
    assert (data["id"], data["status"], data["cost"]) == (task_id, "completed", 0.4)


def test_status_unknown_task_exits_1(sim_process: SimProcess) -> None:
    """An unknown task id is a one-line 404 error, exit status 1."""
    done = run_cli(
        "status",
        "task_nope",
        "--provider",
        "apimart",
        *sim_process.cli_args(),
        env=sim_process.env(),
    )
    assert done.returncode == 1
    assert done.stderr.startswith("omnivid: error: HTTP 404")
    assert "Traceback" not in done.stderr


def test_download_saves_completed_task(
    sim_process: SimProcess, finished_task: str, tmp_path: Path
) -> None:
    """``download`` saves a completed task's video and prints its path."""
    task_id = finished_task
    done = run_cli(
        "download",
        task_id,
        "--provider",
        "apimart",
        "--out",
        str(tmp_path / "dl"),
        *sim_process.cli_args(),
        env=sim_process.env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "dl" / f"{task_id}.mp4")
    assert (tmp_path / "dl" / f"{task_id}.mp4").read_bytes()[4:8] == b"ftyp"


def test_download_existing_file_needs_overwrite(sim_process: SimProcess, tmp_path: Path) -> None:
    """A different file in the way is replaced only with --overwrite, the flag the error names."""
    task_id = generate_on(sim_process, tmp_path)
    video = tmp_path / f"{task_id}.mp4"
    video.write_bytes(b"not the video")
    args = ["download", task_id, "--provider", "apimart", "--out", str(tmp_path)]
    refused = run_cli(*args, *sim_process.cli_args(), env=sim_process.env())
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "pass --overwrite to replace it" in refused.stderr
    assert "overwrite=True" not in refused.stderr
    assert video.read_bytes() == b"not the video"
    replaced = run_cli(*args, "--overwrite", *sim_process.cli_args(), env=sim_process.env())
    assert replaced.returncode == 0, replaced.stderr
    assert video.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("command", ["status", "download"])
def test_task_commands_without_key_suggest_base_url(command: str, tmp_path: Path) -> None:
    """``status`` and ``download`` have no --simulate: without a key they point to --base-url."""
    out = ["--out", str(tmp_path)] if command == "download" else []
    done = run_cli(command, "task_x", "--provider", "apimart", *out)
    assert done.returncode == 2
    assert done.stderr.startswith("omnivid: error: no API key for apimart: set APIMART_API_KEY")
    assert "--base-url" in done.stderr and "--simulate" not in done.stderr


@pytest.mark.parametrize("args", [["models"], ["models", "--json"], ["--help"]])
def test_reader_leaving_early_is_not_an_error(args: list[str]) -> None:
    """``omnivid models | head -1``: stdout closed before the output, exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnivid", *args],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything was written
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    proc.stderr.close()
    assert (proc.returncode, stderr) == (0, b"")


def test_api_key_never_printed(sim_process: SimProcess, tmp_path: Path) -> None:
    """No command prints the API key, even with --verbose."""
    done = run_cli(
        "generate",
        "a fox",
        *EXT_ARGS,
        "--out",
        str(tmp_path),
        "--verbose",
        *sim_process.cli_args(),
        env=sim_process.env(),
    )
    assert done.returncode == 0, done.stderr
    assert SIM_KEY not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def timed_out(
    sim_process: SimProcess, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    """``generate --timeout`` on a task far longer than the timeout."""
    return run_cli(
        "generate",
        "a very long take [[duration=100000]]",
        *EXT_ARGS,
        "--timeout",
        "0.5",
        "--out",
        str(tmp_path_factory.mktemp("slow")),
        *sim_process.cli_args(),
        env=sim_process.env(),
    )


def test_generate_timeout_names_running_task(timed_out: subprocess.CompletedProcess[str]) -> None:
    """A ``--timeout`` exits 1 naming the task id that goes on running, and how to check it."""
    assert timed_out.returncode == 1
    last = timed_out.stderr.strip().splitlines()[-1]
    assert last.startswith("omnivid: error: task task_")
    assert "not finished after 0.5 s" in last
    assert "omnivid status task_" in last


def test_simulated_generate_timeout_says_the_task_stops(tmp_path: Path) -> None:
    """With --simulate a timed-out task does not go on anywhere: no `omnivid status` advice."""
    done = run_cli(
        "generate", "a very long take [[duration=100000]]", *EXT_ARGS, "--timeout", "0.3",
        "--out", str(tmp_path), "--simulate", "--sim-time-scale", "0.002",
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "not finished after 0.3 s; it stops with the simulator" in last
    assert "omnivid status" not in done.stderr


def test_download_not_ready(
    sim_process: SimProcess, timed_out: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """``download`` of a task still running says so and exits 1."""
    match = re.search(r"submitted apimart task (\S+)", timed_out.stderr)
    assert match, timed_out.stderr
    done = run_cli(
        "download",
        match[1],
        "--provider",
        "apimart",
        "--out",
        str(tmp_path),
        *sim_process.cli_args(),
        env=sim_process.env(),
    )
    assert done.returncode == 1
    assert "nothing to download yet" in done.stderr
    assert not any(tmp_path.iterdir())
