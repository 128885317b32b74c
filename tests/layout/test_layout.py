"""The package's layout: wings, module sizes, and imports that flow one way without cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "omnivid"
WINGS = ("batch", "cli", "journal", "http", "aio", "providers", "testing", "integrations")
# lower layers must not import (at run time) the layers above them
LOWER = {
    "omnivid._models": ("omnivid._client", "omnivid.batch", "omnivid.cli", "omnivid.journal"),
    "omnivid.providers": ("omnivid._client", "omnivid.batch", "omnivid.cli", "omnivid._http"),
    "omnivid._http": ("omnivid._client", "omnivid.batch", "omnivid.cli", "omnivid.journal"),
    "omnivid.journal": ("omnivid._client", "omnivid.batch", "omnivid.cli", "omnivid._http"),
    "omnivid.batch": ("omnivid._client", "omnivid.cli", "omnivid.testing"),
    "omnivid._client": ("omnivid.cli", "omnivid.testing"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import, at module level or inside a function, except under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for s in child.orelse for n in _runtime_imports_of(s))
            continue
        yield from _runtime_imports_of(child)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _runtime_imports(node)


def _edges(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            targets.add(sub if sub in MODULES else source)
    return {t for t in targets if t in MODULES and t != module}


GRAPH = {module: _edges(module) for module in MODULES}


def test_no_runtime_import_cycle() -> None:
    """No module imports, at run time (lazy imports included), one that imports it back."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("lower", sorted(LOWER))
def test_imports_flow_one_way(lower: str) -> None:
    """A lower layer never imports a higher one at run time (cli → batch → client → http …)."""
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if module == lower or module.startswith(lower + ".")
        for target in targets
        if any(target == up or target.startswith(up + ".") for up in LOWER[lower])
    }
    assert not wrong


def test_no_module_over_600_lines() -> None:
    """Every module stays readable on its own: at most about 600 lines."""
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long


def test_top_level_is_small_and_unprefixed() -> None:
    """At most ten modules sit directly in omnivid/; none is named after a wing, and no module
    inside a wing repeats the wing's name as a prefix."""
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top
    prefixed = [p for p in top if p.lstrip("_").startswith(tuple(w + "_" for w in WINGS))]
    assert not prefixed
    for wing in PACKAGE.iterdir():
        if wing.is_dir() and (wing / "__init__.py").exists():
            name = wing.name.lstrip("_")
            repeated = [p.name for p in wing.rglob("*.py") if p.stem.lstrip("_").startswith(name)]
            assert not repeated, wing.name


def test_batch_sees_the_journal_only_through_its_seam() -> None:
    """omnivid.batch imports the journal package's interface, never a backend module."""
    backend = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("omnivid.batch")
        for target in targets
        if target.startswith("omnivid.journal.")
    }
    assert not backend
