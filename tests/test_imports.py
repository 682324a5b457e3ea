"""Import direction between the packages (docs/architecture.md), checked on the source with ast.

    tools ─▶ stream ─▶ features, serving ─▶ contract        serving.offline, serving.online ─▶ serving.model

Rules, for every .py under contract/, stream/, features/, serving/ and tools/:
  * nothing imports `tools` (the command-line tools around the service: tools.produce, tools.tail,
    tools.bench_client) or `stream`; `features` is imported by `stream` only; `contract` imports nothing
    of the project; `stream` does not import `serving.offline` (training and evaluation are not the
    worker's); `serving.model` imports neither `serving.offline` nor `serving.online`;
    `serving.online` does not import `serving.offline`, nor `serving.offline` `serving.online` (a
    trained model directory reaches Triton through one entry point, `python -m serving.online.export
    publish`);
  * no private name (`_x`, either a module or a name taken with `from ... import _x`) is imported
    from another top-level package;
  * no import cycles between modules.
Imports anywhere count, inside functions and under `if TYPE_CHECKING:` too.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "stream", "features", "serving", "tools")

# (importer prefix, forbidden module prefix, why); every rule whose importer prefix matches applies.
DIRECTION_RULES: list[tuple[str, str, str]] = [
    ("contract", "stream", "contract imports nothing of the project"),
    ("contract", "features", "contract imports nothing of the project"),
    ("contract", "serving", "contract imports nothing of the project"),
    ("contract", "tools", "nothing imports tools"),
    ("stream", "tools", "nothing imports tools"),
    ("features", "tools", "nothing imports tools"),
    ("serving", "tools", "nothing imports tools"),
    ("stream", "serving.offline", "the worker does not train or evaluate"),
    ("features", "stream", "nothing imports stream"),
    ("serving", "stream", "nothing imports stream"),
    ("features", "serving", "features imports only contract"),
    ("serving", "features", "features is imported by stream only"),
    ("serving.model", "serving.offline", "serving.model imports only contract"),
    ("serving.model", "serving.online", "serving.model imports only contract"),
    ("serving.online", "serving.offline", "serving.online imports only contract and serving.model"),
    ("serving.offline", "serving.online", "export goes through python -m serving.online.export publish"),
]


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the checked root
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted module name of a file, and whether it is a package's __init__."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve(node: ast.ImportFrom, module: str, is_init: bool) -> str | None:
    """Absolute module named by a `from` import (relative ones resolved against ``module``)."""
    if not node.level:
        return node.module
    package = module.split(".") if is_init else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None  # beyond the top-level package: not ours to judge
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Yield (node, under_type_checking) for every import statement in the tree."""

    def walk(node: ast.AST, type_only: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, type_only
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk_stmt(stmt, True)
                for stmt in child.orelse:
                    yield from walk_stmt(stmt, type_only)
            else:
                yield from walk(child, type_only)

    def walk_stmt(stmt: ast.stmt, type_only: bool):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt, type_only
        else:
            yield from walk(stmt, type_only)

    yield from walk(tree, False)


def check_imports(root: Path) -> list[Violation]:
    """Every import-rule violation in the packages under ``root``."""
    root = Path(root)
    found: list[Violation] = []
    modules = {_module_of(path, root)[0] for pkg in PACKAGES for path in (root / pkg).rglob("*.py")}
    edges: dict[str, dict[str, tuple[str, int]]] = {}  # importer -> imported module -> (path, line)
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            module, is_init = _module_of(path, root)
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node, type_only in _imports(tree):
                # (imported module, private name taken from it or None) for each thing imported
                targets: list[tuple[str, str | None]] = []
                if isinstance(node, ast.Import):
                    targets = [(alias.name, None) for alias in node.names]
                else:
                    base = _resolve(node, module, is_init)
                    if base is None:
                        continue
                    targets = [(base, alias.name if _is_private(alias.name) else None) for alias in node.names]
                    # `from package import module` imports that module
                    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                    for submodule in submodules:
                        edges.setdefault(module, {}).setdefault(submodule, (rel, node.lineno))
                for target, private_name in targets:
                    top = target.split(".")[0]
                    if top not in PACKAGES:
                        continue
                    if target in modules and target != module:
                        edges.setdefault(module, {}).setdefault(target, (rel, node.lineno))
                    for importer, imported, why in DIRECTION_RULES:
                        if not (_within(module, importer) and _within(target, imported)):
                            continue
                        kind = "type-only import" if type_only else "import"
                        found.append(Violation(rel, node.lineno, f"{importer} must not import {imported}: "
                                               f"{kind} of {target} ({why})"))
                    if top != module.split(".")[0]:
                        private_parts = [p for p in target.split(".") if _is_private(p)]
                        if private_parts:
                            found.append(Violation(rel, node.lineno, f"private module {target} imported "
                                                   f"from another package ({top})"))
                        if private_name:
                            found.append(Violation(rel, node.lineno, f"private name {private_name} imported "
                                                   f"from {target}, another package ({top})"))
    return found + _cycles(edges)


def _cycles(edges: dict[str, dict[str, tuple[str, int]]]) -> list[Violation]:
    """One violation per import cycle (strongly connected set of modules), at its first module's
    import of the next module of the cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[Violation] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycle = sorted(members)
                first = cycle[0]
                nxt = min(m for m in edges[first] if m in members)
                path, line = edges[first][nxt]
                found.append(Violation(path, line, f"import cycle: {' -> '.join(cycle)} (a module of the cycle "
                                                   f"imports {nxt} here)"))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _fake_tree(root: Path) -> None:
    """A tiny tree that keeps every rule, including the allowed type-only import."""
    for pkg in ("contract", "stream", "features", "serving", "serving/model", "serving/offline", "serving/online"):
        _write(root, f"{pkg}/__init__.py", "")
    _write(root, "contract/settings.py", "import os\nfrom ._util import helper\n")
    _write(root, "contract/_util.py", "def helper(): ...\n")
    _write(root, "features/store.py", "from contract.settings import helper\nfrom contract import settings\n")
    _write(root, "serving/model/artifacts.py",
           "from typing import TYPE_CHECKING\nfrom contract import settings\n"
           "if TYPE_CHECKING:\n    from serving.model.sessions import Session\n")
    _write(root, "serving/model/sessions.py", "from contract import settings\n")
    _write(root, "serving/offline/data.py", "from serving.model import artifacts\nfrom ..model._impl import x\n")
    _write(root, "serving/online/export.py", "def f():\n    from serving.model import artifacts\n")
    _write(root, "stream/app.py", "import features.store\nfrom serving.online import client\nfrom . import _local\n"
           "def f():\n    from serving.model.artifacts import load\n")
    _write(root, "tools/__init__.py", "")
    _write(root, "tools/produce.py", "from serving.offline.data import load\nimport stream.app\n")


def test_fake_tree_without_violations_passes(tmp_path):
    _fake_tree(tmp_path)
    assert check_imports(tmp_path) == []


def test_planted_violations_are_found(tmp_path):
    _fake_tree(tmp_path)
    _write(tmp_path, "contract/vocab.py", "from serving.model import artifacts\n")
    _write(tmp_path, "features/state.py", "x = 1\n\ndef f():\n    import stream.app\n")
    _write(tmp_path, "serving/online/client.py",
           "from features.store import thing\nfrom contract.settings import _secret, __version__\n"
           "import contract._util\nfrom serving.offline import data\n")
    _write(tmp_path, "serving/model/transformer.py",
           "import typing\nif typing.TYPE_CHECKING:\n    from serving.online import client\n"
           "else:\n    from serving.offline import data\n")
    _write(tmp_path, "contract/messages.py",
           "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from features.state import x\n")
    found = {(v.path, v.line, v.rule.split(":")[0]) for v in check_imports(tmp_path)}
    assert found == {
        ("contract/vocab.py", 1, "contract must not import serving"),
        ("features/state.py", 4, "features must not import stream"),
        ("serving/online/client.py", 1, "serving must not import features"),
        ("serving/online/client.py", 2,
         "private name _secret imported from contract.settings, another package (contract)"),
        ("serving/online/client.py", 3, "private module contract._util imported from another package (contract)"),
        ("serving/online/client.py", 4, "serving.online must not import serving.offline"),
        ("serving/model/transformer.py", 3, "serving.model must not import serving.online"),
        ("serving/model/transformer.py", 5, "serving.model must not import serving.offline"),
        ("contract/messages.py", 3, "contract must not import features"),
    }
    message = next(str(v) for v in check_imports(tmp_path) if v.path == "serving/model/transformer.py" and v.line == 3)
    assert message.startswith("serving/model/transformer.py:3: serving.model must not import serving.online")
    assert "type-only import" in message


def test_planted_violations_of_the_tool_worker_and_export_rules_are_found(tmp_path):
    _fake_tree(tmp_path)
    _write(tmp_path, "stream/pipeline.py", "from serving.offline import data\n")
    _write(tmp_path, "serving/offline/train.py", "def f():\n    from serving.online.export import export_model\n")
    _write(tmp_path, "serving/online/client.py", "import tools\n")
    _write(tmp_path, "features/cache.py", "import tools.produce\n")
    _write(tmp_path, "serving/model/artifacts.py",
           "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from serving.offline.data import Session\n")
    found = {(v.path, v.line, v.rule.split(":")[0]) for v in check_imports(tmp_path)}
    assert found == {
        ("stream/pipeline.py", 1, "stream must not import serving.offline"),
        ("serving/offline/train.py", 2, "serving.offline must not import serving.online"),
        ("serving/online/client.py", 1, "serving must not import tools"),
        ("features/cache.py", 1, "features must not import tools"),
        ("serving/model/artifacts.py", 3, "serving.model must not import serving.offline"),
        # serving.offline.data imports serving.model.artifacts, which (type-only) imports it back
        ("serving/model/artifacts.py", 3, "import cycle"),
    }


def test_an_import_cycle_is_found_once_with_its_modules(tmp_path):
    _fake_tree(tmp_path)
    _write(tmp_path, "serving/offline/a.py", "from serving.offline import b\n")
    _write(tmp_path, "serving/offline/b.py", "x = 1\n\ndef f():\n    import serving.offline.c\n")
    _write(tmp_path, "serving/offline/c.py", "from .a import thing\n")
    cycles = [str(v) for v in check_imports(tmp_path) if "cycle" in v.rule]
    assert cycles == ["serving/offline/a.py:1: import cycle: serving.offline.a -> serving.offline.b -> "
                      "serving.offline.c (a module of the cycle imports serving.offline.b here)"]


def test_planted_violation_in_a_copy_of_the_repo(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "contract" / "settings.py"
    lines = target.read_text(encoding="utf-8").splitlines()
    target.write_text("\n".join(lines + ["from stream import pipeline"]) + "\n", encoding="utf-8")
    planted = {str(v) for v in check_imports(tmp_path)} - {str(v) for v in check_imports(REPO)}
    assert planted == {
        f"contract/settings.py:{len(lines) + 1}: contract must not import stream: import of stream "
        "(contract imports nothing of the project)",
        # stream.pipeline imports contract.settings
        f"contract/settings.py:{len(lines) + 1}: import cycle: contract.settings -> stream.pipeline (a module "
        "of the cycle imports stream.pipeline here)",
    }


def test_repository_keeps_the_import_rules():
    violations = check_imports(REPO)
    assert not violations, "import rules broken (docs/architecture.md):\n" + "\n".join(map(str, violations))
