"""The package's import structure: no cycles, no upward imports, lazy heavy dependencies.

The first two tests read every module of ``ferclean`` with :mod:`ast` (nothing is
imported) and collect its imports of ``ferclean.*``: module-level and function-level
``import ferclean.x``, ``from ferclean.x import y`` and relative imports. Imports inside an
``if TYPE_CHECKING:`` block are left out: they never run, and annotations may point
anywhere. String imports (``importlib.import_module("ferclean.x")``, as the package
``__init__`` does for its lazy re-exports) are not seen either.

An import ``from ferclean.a import b`` counts as an import of the module ``ferclean.a.b``
when that is a module, and of ``ferclean.a`` otherwise. The parent packages Python
initialises on the way are not counted: ``ferclean.auditors.context`` importing
``ferclean.auditors.base`` does not make it depend on ``ferclean/auditors/__init__.py``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

# The layers, bottom up; a module may import from its own layer or below. A module's
# layer is that of its first component under ``ferclean`` (``ferclean.similarity.near``
# is in ``similarity``); ``__init__`` is the package ``ferclean/__init__.py`` itself.
# This table mirrors the one in docs/architecture.md: change both together.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0; ``_version`` does not exist yet: the proposed home of ``__version__``, which
    # library modules now read from the package ``__init__`` (layer 10)
    ("errors", "_outputs", "_atomic", "_json", "_progress", "_validation", "_figures",
     "_version", "dataset"),
    ("io", "demo"),  # 1
    ("similarity", "labels"),  # 2
    ("findings",),  # 3
    ("auditors",),  # 4
    ("cleaning", "protocol"),  # 5
    ("engines",),  # 6: the Dask engines (optional extra), on top of what they run
    ("learning",),  # 7
    ("reporting",),  # 8
    ("bench",),  # 9
    ("cli", "__main__", "__init__"),  # 10
)
LAYER_OF: dict[str, int] = {name: i for i, names in enumerate(LAYERS) for name in names}

PACKAGE = "ferclean"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / PACKAGE


@dataclass(frozen=True)
class Import:
    """One import of a ferclean module, as written in the source."""

    source: str  # importing module, e.g. "ferclean.auditors.base"
    target: str  # imported module, e.g. "ferclean.findings"
    path: Path
    line: int
    text: str  # the statement, e.g. "from ferclean.findings import group_counts"
    function: str | None  # enclosing function, None at module level

    def where(self) -> str:
        scope = f" (in {self.function}())" if self.function else ""
        return f"{self.path.relative_to(ROOT)}:{self.line}: `{self.text}`{scope}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer_key(module: str) -> str:
    """``ferclean.similarity.near`` -> ``similarity``; ``ferclean`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, is_package: bool, modules: set[str]):
        self.module, self.path, self.modules = module, path, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.function: list[str] = []
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            self.found.append(Import(
                self.module, target, self.path, node.lineno, ast.unparse(node),
                ".".join(self.function) or None))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the else branch does run
                self.visit(child)
            return
        self.generic_visit(node)

    def _visit_scope(self, node: ast.AST) -> None:
        self.function.append(node.name)  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.function.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            base_name = ".".join(base + ([node.module] if node.module else []))
        else:
            base_name = node.module or ""
        for alias in node.names:
            sub = f"{base_name}.{alias.name}"
            self._add(node, sub if sub in self.modules else base_name)


def collect_imports() -> list[Import]:
    modules = package_modules()
    names = set(modules)
    found: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        collector = _ImportCollector(name, path, path.name == "__init__.py", names)
        collector.visit(tree)
        found.extend(collector.found)
    return found


def _shortest_cycle(start: str, edges: dict[str, dict[str, Import]]) -> list[Import] | None:
    """The shortest chain of imports from ``start`` back to itself, if any."""
    previous: dict[str, Import] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for target, imp in sorted(edges.get(node, {}).items()):
            if target == start:
                chain = [imp]
                while chain[0].source != start:
                    chain.insert(0, previous[chain[0].source])
                return chain
            if target not in seen:
                seen.add(target)
                previous[target] = imp
                queue.append(target)
    return None


def find_cycles(imports: list[Import]) -> list[list[Import]]:
    """One shortest cycle per strongly connected group of modules, deterministically."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.source != imp.target:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    cycles, covered = [], set()
    for start in sorted(edges):
        if start in covered:
            continue
        chain = _shortest_cycle(start, edges)
        if chain:
            cycles.append(chain)
            covered.update(imp.source for imp in chain)
    return cycles


# ---------------------------------------------------------------------- tests
def test_layer_table_covers_every_module():
    unknown = sorted({layer_key(m) for m in package_modules()} - set(LAYER_OF))
    if unknown:
        pytest.fail(f"ferclean module(s) {unknown} have no layer: add them to LAYERS in "
                    f"tests/test_architecture.py and to the table in docs/architecture.md",
                    pytrace=False)


def test_imports_name_existing_modules():
    modules = set(package_modules())
    missing = [imp for imp in collect_imports() if imp.target not in modules]
    if missing:
        pytest.fail("imports of ferclean modules that do not exist:\n" + "\n".join(
            f"  {imp.where()}: no module {imp.target}" for imp in missing), pytrace=False)


def test_no_upward_imports():
    upward = []
    for imp in collect_imports():
        src, dst = layer_key(imp.source), layer_key(imp.target)
        if src in LAYER_OF and dst in LAYER_OF and LAYER_OF[dst] > LAYER_OF[src]:
            upward.append(f"  {imp.where()}: {imp.source} (layer {LAYER_OF[src]}, {src}) "
                          f"imports {imp.target} (layer {LAYER_OF[dst]}, {dst})")
    if upward:
        pytest.fail("upward imports (a module may import only from its own layer or below; "
                    "see docs/architecture.md):\n" + "\n".join(upward), pytrace=False)


def test_no_import_cycles():
    cycles = find_cycles(collect_imports())
    lines = []
    for chain in cycles:
        lines.append("  " + " -> ".join([chain[0].source] + [imp.target for imp in chain]))
        lines.extend(f"      {imp.where()}" for imp in chain)
    if cycles:
        pytest.fail("import cycles between ferclean modules:\n" + "\n".join(lines),
                    pytrace=False)


def test_collector_sees_every_form_of_import(tmp_path):
    source = (
        "from __future__ import annotations\n"
        "import os\n"
        "import ferclean.io.csv\n"
        "from ferclean.findings import make_findings\n"
        "from ferclean import similarity\n"
        "from . import base\n"
        "from ..dataset import FaceDataset\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ferclean.cli import main\n"
        "def f():\n"
        "    from ferclean.reporting import report\n"
    )
    path = PACKAGE_DIR / "auditors" / "example.py"
    modules = set(package_modules())
    collector = _ImportCollector("ferclean.auditors.example", path, False, modules)
    collector.visit(ast.parse(source))
    got = [(imp.target, imp.line, imp.function) for imp in collector.found]
    assert got == [
        ("ferclean.io.csv", 3, None),
        ("ferclean.findings", 4, None),
        ("ferclean.similarity", 5, None),
        ("ferclean.auditors.base", 6, None),
        ("ferclean.dataset", 7, None),
        ("ferclean.reporting", 12, "f"),
    ]


def test_cycle_finder_reports_the_path():
    p = PACKAGE_DIR / "x.py"
    edges = [Import("a", "b", p, 1, "", None), Import("b", "c", p, 2, "", None),
             Import("c", "a", p, 3, "", None), Import("c", "d", p, 4, "", None)]
    (cycle,) = find_cycles(edges)
    assert [imp.source for imp in cycle] == ["a", "b", "c"]
    assert cycle[-1].target == "a"


# ------------------------------------------------------- heavy imports stay lazy
def _modules_after(statement: str, watched: tuple[str, ...]) -> list[str]:
    code = (f"import sys; {statement}; "
            f"print(' '.join(m for m in {watched!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_import_ferclean_stays_light():
    heavy = _modules_after("import ferclean", ("scipy", "sklearn", "matplotlib", "jax"))
    assert not heavy, f"`import ferclean` imports {heavy}; import them where first used"


@pytest.mark.parametrize("module", ["ferclean.learning"])
def test_learning_imports_jax_lazily(module):
    heavy = _modules_after(f"import {module}", ("jax",))
    assert not heavy, f"`import {module}` imports jax; import it inside the functions"
