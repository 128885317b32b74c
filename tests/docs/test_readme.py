"""The README's Python code runs as written: every ```python block, as a script, on the simulator.

Each block is saved to a file in a fresh working directory and run in its own Python process,
with the environment a user would set (``APIMART_API_KEY``, ``OMNIVID_APIMART_BASE_URL``, ...)
pointing at an in-process simulator 1000x faster than real time. A block that stops running
(a renamed API, a missing import, a top-level ``await``) fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from omnivid.testing import Simulator

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUNNER = Path(__file__).with_name("_run_block.py")
SCALE = 0.001  # the `sim` fixture's clock (tests/conftest.py)

_FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
_HEADING = re.compile(r"^#+ (.+)$", re.M)


def python_blocks(text: str) -> dict[str, str]:
    """Every ```python block of a Markdown text, keyed by its section heading (and number)."""
    blocks: dict[str, str] = {}
    for match in _FENCE.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        name = re.sub(r"\W+", "-", headings[-1] if headings else "top").strip("-").lower()
        key, n = name, 2
        while key in blocks:
            key, n = f"{name}-{n}", n + 1
        blocks[key] = match.group(1)
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def block_with(needle: str) -> str:
    """The one README block containing ``needle``."""
    (found,) = [code for code in BLOCKS.values() if needle in code]
    return found


def user_env(sim: Simulator) -> dict[str, str]:
    """A user's environment pointed at ``sim``: keys and base URLs, nothing else of omnivid's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OMNIVID_") and not k.endswith("_API_KEY")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for provider in ("apimart", "evolink"):
        env[f"{provider.upper()}_API_KEY"] = sim.api_key
        env[f"OMNIVID_{provider.upper()}_BASE_URL"] = sim.base_url(provider)
    env["OMNIVID_TEST_TIME_SCALE"] = str(SCALE)
    return env


async def run_block(code: str, cwd: Path, sim: Simulator) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the script ``cwd/block.py`` (see ``_run_block.py``), with cwd ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    script = cwd / "block.py"
    script.write_text(code, encoding="utf-8")
    with anyio.fail_after(90):
        done = await anyio.run_process(
            [sys.executable, str(RUNNER), str(script)],
            cwd=cwd,
            env=user_env(sim),
            check=False,
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def test_the_readme_has_its_python_examples() -> None:
    """The blocks these tests single out are there: generate, map, the simulator, callbacks."""
    assert len(BLOCKS) >= 4, list(BLOCKS)
    for needle in ("client.generate(request)", "client.map(", "Simulator(", "CallbackReceiver("):
        block_with(needle)


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(BLOCKS))
async def test_every_python_block_runs_as_a_script(
    name: str, sim: Simulator, tmp_path: Path
) -> None:
    """The block, pasted into a file of its own, runs to the end with exit status 0."""
    if "postgresql://" in BLOCKS[name]:
        pytest.skip("needs PostgreSQL: run by tests/postgres/test_pg_readme.py")
    done = await run_block(BLOCKS[name], tmp_path, sim)
    assert done.returncode == 0, f"README block {name!r} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.anyio
async def test_the_first_block_saves_its_video(sim: Simulator, tmp_path: Path) -> None:
    """The Use-from-Python block generates one video and saves it under videos/."""
    done = await run_block(block_with("client.generate(request)"), tmp_path, sim)
    assert done.returncode == 0, done.stderr
    (saved,) = (tmp_path / "videos").glob("task_*.mp4")
    assert saved.read_bytes()[4:8] == b"ftyp"
    assert saved.name in done.stdout
    assert sim.stats.submits == 1


@pytest.mark.anyio
async def test_the_map_block_runs_twice_paying_once(sim: Simulator, tmp_path: Path) -> None:
    """The map block creates runs/ for its journal; a second run submits nothing, and its
    downloads return the files the first run saved."""
    code = block_with("client.map(")
    first = await run_block(code, tmp_path, sim)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "runs" / "clips.sqlite").is_file()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 3
    saved = {p: p.stat().st_mtime_ns for p in videos}
    submits = sim.stats.submits
    assert submits == 3

    second = await run_block(code, tmp_path, sim)
    assert second.returncode == 0, second.stderr
    assert sim.stats.submits == submits
    assert sorted(second.stdout.splitlines()) == sorted(first.stdout.splitlines())
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "videos").glob("*.mp4")} == saved


@pytest.mark.anyio
async def test_a_drifted_block_fails(sim: Simulator, tmp_path: Path) -> None:
    """The harness reports a block that no longer matches the library: a renamed method fails
    the run, and a top-level ``async with`` (not a script) does too."""
    generate = block_with("client.generate(request)")
    renamed = generate.replace("client.generate(request)", "client.generat(request)")
    done = await run_block(renamed, tmp_path / "renamed", sim)
    assert done.returncode != 0
    assert "AttributeError" in done.stderr
    fragment = "import omnivid\n\nasync with omnivid.AsyncClient('apimart') as client:\n    pass\n"
    done = await run_block(fragment, tmp_path / "fragment", sim)
    assert done.returncode != 0
    assert "SyntaxError" in done.stderr
