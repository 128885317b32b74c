"""The README's "Running the examples" section and the ``examples`` extra: what it says to
install, start and export is enough to run each example against the simulator."""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from _examples import EXAMPLES, SCALE, load_example, poll_json

from omnivid.testing import SimConfig, Simulator

ROOT = EXAMPLES.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SECTION = README.split("\n## Running the examples\n", 1)[1].split("\n## ", 1)[0]
COMMANDS = [
    line.strip()
    for block in re.findall(r"^```bash\n(.*?)^```$", SECTION, re.S | re.M)
    for line in block.replace("\\\n", " ").splitlines()
    if line.strip() and not line.strip().startswith("#")
]


def readme_exports() -> dict[str, str]:
    """The variables the section's ``export`` lines set."""
    env: dict[str, str] = {}
    for line in COMMANDS:
        words = shlex.split(line)
        if words[0] == "export":
            env.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
    return env


def readme_sim_args() -> list[str]:
    """The arguments of the section's ``omnivid sim`` command."""
    (line,) = [line for line in COMMANDS if line.startswith("omnivid sim")]
    return shlex.split(line)[2:]


def requirement_names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings ("fastapi>=0.110" -> "fastapi")."""
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def third_party_imports(path: Path) -> set[str]:
    """Top-level modules a script imports anywhere (functions included), minus the standard
    library and omnivid."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("omnivid",)}


def test_the_examples_extra_covers_what_the_examples_import() -> None:
    """Every package an example imports is a dependency of omnivid or in its examples extra,
    and the dev extra installs them all (so the example tests run in CI)."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    core = requirement_names(PYPROJECT["project"]["dependencies"])
    examples = requirement_names(extras["examples"])
    assert {"fastapi", "uvicorn"} <= examples
    for script in sorted(EXAMPLES.glob("*.py")):
        missing = third_party_imports(script) - core - examples
        assert not missing, f"{script.name} imports {missing}, in no extra"
    assert examples <= requirement_names(extras["dev"])


def test_the_section_covers_every_example() -> None:
    """Each script in examples/ is named in the section, with how to start it."""
    for script in sorted(EXAMPLES.glob("*.py")):
        assert script.stem in SECTION, script.name
    assert 'pip install -e ".[cli,examples]"' in SECTION
    assert any(c.startswith("uvicorn --factory examples.fastapi_app:create_app") for c in COMMANDS)
    assert "python examples/aiohttp_app.py --port" in SECTION


def test_the_section_names_the_variables_the_apps_read() -> None:
    """Every OMNIVID_* variable the section mentions is one both apps read, and it mentions
    each of theirs that running on a simulator needs."""
    mentioned = set(re.findall(r"OMNIVID_[A-Z_]+", SECTION))
    for name in ("fastapi_app", "aiohttp_app"):
        source = inspect.getsource(load_example(name).Settings.from_env)
        read = set(re.findall(r'"(OMNIVID_[A-Z_]+)"', source))
        assert mentioned <= read, (name, mentioned - read)
    needed = {"OMNIVID_PROVIDER", "OMNIVID_BASE_URL", "OMNIVID_API_KEY", "OMNIVID_TIME_SCALE"}
    assert needed | {"OMNIVID_CALLBACK_URL", "OMNIVID_ALLOW_PRIVATE_CALLBACKS"} <= mentioned
    assert needed <= set(readme_exports())


def test_the_exports_match_the_simulator_command() -> None:
    """The exported base URL, key and time scale are those of the simulator the section
    starts: its port and provider path, its default key, its --time-scale."""
    args = readme_sim_args()
    env = readme_exports()
    url = urlsplit(env["OMNIVID_BASE_URL"])
    assert url.port == int(args[args.index("--port") + 1])
    assert url.path == f"/{env['OMNIVID_PROVIDER']}"
    assert env["OMNIVID_API_KEY"] == SimConfig().default_api_key
    assert env["OMNIVID_TIME_SCALE"] == args[args.index("--time-scale") + 1]
    assert "--allow-loopback-callbacks" in args


@pytest.mark.anyio
async def test_the_fastapi_app_serves_a_video_as_the_readme_says(sim: Simulator) -> None:
    """The section's exports (pointed at this test's simulator, at its time scale) and its curl
    request give a completed task whose video URL can be fetched."""
    env = readme_exports()
    env["OMNIVID_BASE_URL"] = sim.base_url(env["OMNIVID_PROVIDER"])
    env["OMNIVID_TIME_SCALE"] = str(SCALE)
    (post,) = [shlex.split(c) for c in COMMANDS if c.startswith("curl") and " -d " in c]
    request = post[post.index("-d") + 1]
    example = load_example("fastapi_app")
    app = example.create_app(example.Settings.from_env(env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            created = await http.post(
                "/videos", content=request, headers={"content-type": "application/json"}
            )
            assert created.status_code == 201, created.text

            async def get(path: str) -> tuple[int, object]:
                answer = await http.get(path)
                return answer.status_code, answer.json()

            task = await poll_json(
                get, f"/videos/{created.json()['id']}", lambda b: b["status"] == "completed"
            )
    async with httpx.AsyncClient() as plain:
        video = await plain.get(task["videos"][0])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
