"""Import direction and import cycles of docqa's packages, read from the source.

Nothing is imported: every ``.py`` file under the packages is parsed with ``ast`` and
each import of one of our packages is recorded, at module level, inside functions and
under ``if TYPE_CHECKING:`` alike (a hidden import is still a dependency).

Layers, lowest first: ``core`` < ``ingest`` < ``workers`` < ``service`` < ``bench``. A
package imports only itself and lower layers, with one more rule: ``service`` never
imports ``workers`` (it enqueues tasks by name). And no two modules may depend on each
other, directly or through others.

``import a.b.c`` depends on ``a.b.c``; ``from a.b import c`` depends on ``a.b.c`` when
that is a module, else on ``a.b``. Imports by string (``importlib.import_module``) are
not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS = ("core", "ingest", "workers", "service", "bench")
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "ingest": frozenset({"core", "ingest"}),
    "workers": frozenset({"core", "ingest", "workers"}),
    "service": frozenset({"core", "ingest", "service"}),
    "bench": frozenset(LAYERS),
}


@dataclass(frozen=True)
class Import:
    """One dependency of one module on a module of our packages."""

    module: str  # the importing module, e.g. "core.domain"
    path: str  # its file, relative to the root
    line: int
    statement: str  # as written, with the names that resolve to ``target``
    target: str  # the module depended on
    where: str  # "module level", "in a function", "under TYPE_CHECKING"

    def describe(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}` ({self.where})"


def discover(root: Path, packages: Iterable[str] = LAYERS) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Import statements below ``node``, each with where it sits."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, where
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, "in a function")
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            inner = "under TYPE_CHECKING" if where == "module level" else where
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), inner)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), where)
        else:
            yield from _walk(child, where)


def _base_package(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    parts = module.split(".")
    if path.name != "__init__.py":
        parts.pop()
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts)


def imports_of(
    module: str, path: Path, root: Path, known: Iterable[str], packages: Iterable[str] = LAYERS
) -> list[Import]:
    """The imports of our packages in one module's source."""
    known = set(known)
    ours = set(packages)
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    found: list[Import] = []
    for node, where in _walk(tree, "module level"):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, f"import {alias.name}") for alias in node.names]
        else:
            dots = "." * node.level
            if node.level:
                base = _base_package(module, path, node.level)
                source = ".".join(p for p in (base, node.module) if p)
            else:
                source = node.module or ""
            names: dict[str, list[str]] = {}  # target -> names imported from it
            for alias in node.names:
                candidate = f"{source}.{alias.name}" if source else alias.name
                names.setdefault(candidate if candidate in known else source, []).append(alias.name)
            pairs = [
                (target, f"from {dots}{node.module or ''} import {', '.join(imported)}")
                for target, imported in names.items()
            ]
        for target, statement in pairs:
            if target.split(".")[0] in ours:
                found.append(Import(module, rel, node.lineno, statement, target, where))
    return found


def collect(root: Path, packages: Iterable[str] = LAYERS) -> tuple[list[str], list[Import]]:
    """All modules of ``packages`` and all their imports of those packages."""
    packages = tuple(packages)
    modules = discover(root, packages)
    imports = [
        imp
        for name, path in modules.items()
        for imp in imports_of(name, path, root, modules, packages)
    ]
    return sorted(modules), imports


def upward_imports(imports: Iterable[Import]) -> list[str]:
    """One line per import that goes against the layers."""
    problems = []
    for imp in imports:
        source, target = imp.module.split(".")[0], imp.target.split(".")[0]
        allowed = ALLOWED.get(source, frozenset({source}))
        if target not in allowed:
            problems.append(
                f"{imp.describe()}: {source} may import only {', '.join(sorted(allowed))}"
            )
    return sorted(problems)


def _resolve(target: str, known: set[str]) -> str | None:
    """The module a target names: itself, or its longest known parent package."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in known:
            return name
        parts.pop()
    return None


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return components


def import_cycles(modules: Iterable[str], imports: Iterable[Import]) -> list[str]:
    """One paragraph per cycle: its modules and the imports that close it."""
    known = set(modules)
    edges: dict[str, set[str]] = {}
    by_edge: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        target = _resolve(imp.target, known)
        if target is None:
            continue
        edges.setdefault(imp.module, set()).add(target)
        by_edge.setdefault((imp.module, target), []).append(imp)
    problems = []
    for component in _strongly_connected(sorted(known), edges):
        members = set(component)
        if len(component) == 1 and component[0] not in edges.get(component[0], set()):
            continue
        lines = [f"cycle between {', '.join(component)}:"]
        for (source, target), imps in sorted(by_edge.items()):
            if source in members and target in members:
                lines += [f"    {imp.describe()} -> {target}" for imp in imps]
        problems.append("\n".join(lines))
    return sorted(problems)


def test_no_upward_imports() -> None:
    _, imports = collect(ROOT)
    problems = upward_imports(imports)
    if problems:
        pytest.fail(
            "imports against the layers (core < ingest < workers < service < bench; "
            "service never imports workers):\n" + "\n".join(problems),
            pytrace=False,
        )


def test_no_import_cycles() -> None:
    modules, imports = collect(ROOT)
    problems = import_cycles(modules, imports)
    if problems:
        pytest.fail("import cycles:\n" + "\n".join(problems), pytrace=False)


def test_the_checker_finds_upward_imports_and_cycles(tmp_path: Path) -> None:
    """Both checks can fail: a small tree with each kind of problem, hidden the usual ways."""
    files = {
        "core/__init__.py": "",
        # cycle a <-> b: a function-level `from pkg import mod`, and a dotted `import`
        "core/a.py": "def f():\n    from core import b\n    return b\n",
        "core/b.py": "import core.a\n",
        # upward, only for the type checker
        "core/c.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ingest.x import X\n"
        ),
        "ingest/__init__.py": "",
        "ingest/x.py": "from core.a import f\nX = f\n",  # downward: fine
        "ingest/y.py": "from . import y\n",  # imports itself
        "workers/__init__.py": "",
        "workers/w.py": "from ingest import x\n",  # downward: fine
        "service/__init__.py": "",
        "service/s.py": "from .t import T\n",  # relative, same package: fine
        "service/t.py": "class T:\n    def run(self):\n        import workers.w\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")

    modules, imports = collect(tmp_path, ("core", "ingest", "workers", "service"))

    assert upward_imports(imports) == [
        "core/c.py:3: `from ingest.x import X` (under TYPE_CHECKING): core may import only core",
        "service/t.py:3: `import workers.w` (in a function): service may import only "
        "core, ingest, service",
    ]
    assert import_cycles(modules, imports) == [
        "cycle between core.a, core.b:\n"
        "    core/a.py:2: `from core import b` (in a function) -> core.b\n"
        "    core/b.py:1: `import core.a` (module level) -> core.a",
        "cycle between ingest.y:\n    ingest/y.py:1: `from . import y` (module level) -> ingest.y",
    ]
